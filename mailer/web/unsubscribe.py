"""``mailer serve``: the unsubscribe endpoint and preference page (SPEC §7), a small Flask app served by waitress.

Every route answers twice: at the path of ``[sender] unsubscribe_url`` (``/mailer/u/<token>``
for ``https://northwind.example/mailer``), so the URL in a message's ``List-Unsubscribe`` header
works verbatim once a proxy forwards it, and bare (``/u/<token>``), so links already sent and a
proxy that strips the path keep working. Behind ``[web] trusted_proxies`` hops werkzeug's
ProxyFix believes their ``X-Forwarded-For/-Proto/-Host/-Prefix``; the links on the pages are
built from the request, so they carry the prefix (and, behind trusted proxies, the scheme and
host) the visitor used.

    POST /u/<token>   with ``List-Unsubscribe=One-Click`` in the body (RFC 8058):
                      unsubscribe from everything at once, 200, no page.
    GET  /u/<token>   the preference page (mailer.web.preferences): leave one campaign,
                      pause for some months, unsubscribe from everything, or undo any of
                      these. A GET never changes anything, so link scanners cannot.
    POST /u/<token>   a button of that page: the change, then the page again with a notice.
                      Refused (403, nothing changed) without the page's CSRF value.
    POST /r/<token>   the undo link of earlier confirmation pages: resubscribe (a token of
                      its own purpose that expires).
    GET  /healthz     200 while the store answers, 503 otherwise.

The token in the URL is HMAC-signed for one customer (and, in a message's link, the send-log
row of that message); a forged, truncated or wrong-purpose token gets a 400 page and changes
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, render_template_string, request, url_for
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col
from waitress.server import create_server
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from mailer.compose.page import Visitor, page_context
from mailer.compose.tokens import RESUBSCRIBE, BadToken, make_token, read_link, read_token
from mailer.config import Settings
from mailer.contacts import optout, preferences
from mailer.store.tables import Customer, utcnow
from mailer.web import admin, answers, api
from mailer.web.preferences import (
    BadForm,
    ForgedForm,
    PageTemplate,
    apply,
    check_csrf,
    csrf_value,
)

log = logging.getLogger(__name__)

UNDO_WINDOW = timedelta(days=30)
_ONE_CLICK = "One-Click"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token must not leak to another site
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # nobody may frame the button and trick a click
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }} · {{ company }}</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; color: #222; background: #f6f5f2; margin: 0; }
main { max-width: 32rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 8px; }
h1 { font-size: 1.4rem; margin-top: 0; }
button { font: inherit; padding: .6rem 1.4rem; border: 0; border-radius: 6px;
         background: #2d5b3f; color: #fff; cursor: pointer; }
.quiet { color: #666; font-size: .9rem; }
</style>
</head>
<body>
<main>
<h1 id="heading">{{ heading }}</h1>
{% for paragraph in paragraphs %}<p>{{ paragraph }}</p>
{% endfor %}
{% if button %}<form method="post"{% if action %} action="{{ action }}"{% endif %}>
<button type="submit" id="confirm">{{ button }}</button>
</form>{% endif %}
<p class="quiet">{{ company }} · {{ postal_address }}</p>
</main>
</body>
</html>
"""


def mount_path(unsubscribe_url: str) -> str:
    """The path part of ``unsubscribe_url`` without its trailing slash: ``/mailer``, or ``""``."""
    return urlsplit(unsubscribe_url).path.rstrip("/")


def create_app(
    settings: Settings, engine: Engine, *, now: Callable[[], datetime] = utcnow
) -> Flask:
    """The WSGI app. The secret is read now: a missing secret fails at start, not per request."""
    secret = settings.sender.secret.reveal()
    sender = settings.sender
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024  # a one-click body is 26 bytes
    hops = settings.web.trusted_proxies
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops
        )
    # Blueprint routes, so the same views can be registered at the bare path and the configured one.
    routes = Blueprint("unsubscribe", __name__)
    template = PageTemplate(settings.render.templates)

    def page(
        status: int, title: str, heading: str, *paragraphs: str, button: str = "", action: str = ""
    ) -> Response:
        """A plain message page (errors, not found, the owner's "mark handled"); the preference page is
        the marketers' template."""
        html = render_template_string(
            PAGE,
            title=title,
            heading=heading,
            paragraphs=paragraphs,
            button=button,
            action=action,
            company=sender.company,
            postal_address=sender.postal_address,
        )
        return Response(html, status=status, mimetype="text/html")

    def not_found() -> Response:
        return page(
            404,
            "Not found",
            "We could not find this subscription",
            "The address may have been removed from our list already. Nothing was changed.",
        )

    def visitor(customer_id: int) -> Visitor | None:
        with Session(engine) as session:
            row = session.execute(
                select(
                    col(Customer.email), col(Customer.unsubscribed_at), col(Customer.timezone), col(Customer.tags)
                ).where(col(Customer.id) == customer_id)
            ).first()
        if row is None:
            return None
        email, unsubscribed_at, zone, tags = row
        return Visitor(customer_id, email, unsubscribed_at is not None, zone or sender.timezone, frozenset(tags or ()))

    def link(view: str, token: str) -> str:
        # ".view" is the blueprint the request came in on, so the link keeps its prefix (and the
        # X-Forwarded-Prefix of a trusted proxy). Scheme and host are spelled out only when a trusted
        # proxy told us the visitor's: otherwise they may be the proxy's (http://127.0.0.1:8025), and
        # a path alone keeps whatever scheme and host the visitor used.
        return url_for(f".{view}", token=token, _external=bool(hops))

    def preference_page(found: Visitor, token: str, notice: str = "") -> Response:
        context = page_context(
            sender,
            settings.campaigns,
            found,
            preferences.preferences_of(engine, found.id),
            action=link("preferences_view", token),
            csrf=csrf_value(secret, token),
            notice=notice,
        )
        return Response(template.render(context), status=200, mimetype="text/html")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.update(_SECURITY_HEADERS)
        return response

    @app.errorhandler(BadToken)
    def bad_token(exc: BadToken) -> Response:
        log.info("refused a token from %s: %s", request.remote_addr, exc)
        return page(
            400,
            "Invalid link",
            "This link is not valid",
            "It may have been cut short when it was copied, or it has expired. "
            "Nothing was changed.",
            "Please use the link from the email itself, "
            "or reply to the email and we will take you off the list.",
        )

    @app.errorhandler(SQLAlchemyError)
    def store_down(exc: SQLAlchemyError) -> Response:
        log.error("store error: %s", exc)
        response = page(
            503,
            "Try again",
            "Something went wrong on our side",
            "Nothing was changed. Please try again in a minute.",
        )
        response.headers["Retry-After"] = "60"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        return page(code, exc.name, exc.name, "There is nothing here.")

    @routes.get("/healthz")
    def healthz() -> Response:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return Response("ok\n", mimetype="text/plain")

    @app.errorhandler(BadForm)
    def bad_form(exc: BadForm) -> Response:
        log.info("refused a form from %s: %s", request.remote_addr, exc)
        return page(
            403 if isinstance(exc, ForgedForm) else 400,
            "Please try again",
            "This form could not be used",
            "Nothing was changed. Please open the link in the email again and choose once more.",
        )

    @routes.get("/u/<token>")
    def preferences_view(token: str) -> Response:
        found = visitor(read_link(secret, token).customer_id)
        if found is None:
            return not_found()
        return preference_page(found, token)

    @routes.post("/u/<token>")
    def change(token: str) -> Response:
        given = read_link(secret, token)
        if _is_one_click():
            result = optout.unsubscribe(
                engine, given.customer_id, optout.Source.ONE_CLICK, now(), send_log_id=given.send_log_id
            )
            if result is optout.Change.UNKNOWN:
                return not_found()
            return Response("unsubscribed\n", mimetype="text/plain")
        check_csrf(secret, token, request.form.get("csrf"))
        found = visitor(given.customer_id)
        if found is None:
            return not_found()
        notice = apply(engine, settings, found, given, request.form, now())
        return preference_page(visitor(found.id) or found, token, notice)

    @routes.post("/r/<token>")
    def resubscribe(token: str) -> Response:
        customer_id = read_token(secret, token, RESUBSCRIBE, max_age=UNDO_WINDOW, now=now())
        if optout.resubscribe(engine, customer_id, now()) is optout.Change.UNKNOWN:
            return not_found()
        found = visitor(customer_id)
        if found is None:
            return not_found()
        return preference_page(found, make_token(secret, customer_id), "You are subscribed again")

    answers.register(app, settings, engine, now=now, page=page)  # "how did we do?" (mailer/web/answers.py)
    admin.register(app, settings, engine, now=now)  # /admin/ when [admin] has a password (mailer/web/admin.py)
    api.register(app, settings, engine, now=now)  # the JSON API under /api/v1 (mailer/web/api.py)
    app.register_blueprint(routes)
    prefix = mount_path(sender.unsubscribe_url)
    if prefix:
        app.register_blueprint(routes, name="unsubscribe_at_path", url_prefix=prefix)
    return app


def _is_one_click() -> bool:
    """RFC 8058: the body carries ``List-Unsubscribe=One-Click`` (form-encoded or multipart)."""
    if request.mimetype in _FORM_TYPES:
        return request.form.get("List-Unsubscribe") == _ONE_CLICK
    # Some senders of one-click POSTs leave out the content type; read the (size-capped) body.
    return request.get_data(as_text=True).strip() == f"List-Unsubscribe={_ONE_CLICK}"


def make_server(app: Flask, host: str, port: int, threads: int = 8, *, trusted_proxies: int = 0) -> Any:
    """A waitress server bound to ``host:port`` (0 picks a free port: see ``.effective_port``).

    Waitress drops X-Forwarded-For/-Proto/-Host itself unless told otherwise; with trusted proxies it
    must pass them on, for the app's ProxyFix (which also reads X-Forwarded-Prefix) to weigh them.
    """
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="mailer",
        clear_untrusted_proxy_headers=trusted_proxies == 0,
    )
