"""``mailer serve``: the unsubscribe endpoint (SPEC §7), a small Flask app served by waitress.

Every route answers twice: at the path of ``[sender] unsubscribe_url`` (``/mailer/u/<token>``
for ``https://northwind.example/mailer``), so the URL in a message's ``List-Unsubscribe`` header
works verbatim once a proxy forwards it, and bare (``/u/<token>``), so links already sent and a
proxy that strips the path keep working. Behind ``[web] trusted_proxies`` hops werkzeug's
ProxyFix believes their ``X-Forwarded-For/-Proto/-Host/-Prefix``; the links on the pages are
built from the request, so they carry the prefix (and, behind trusted proxies, the scheme and
host) the visitor used.

    POST /u/<token>   with ``List-Unsubscribe=One-Click`` in the body (RFC 8058):
                      unsubscribe at once, 200, no page.
    GET  /u/<token>   a plain page: whose address (masked) and one button. A GET
                      never changes anything, so link scanners cannot unsubscribe anyone.
    POST /u/<token>   from that button: unsubscribe, then a confirmation with an undo button.
    POST /r/<token>   the undo: resubscribe (a token of its own purpose that expires).
    GET  /healthz     200 while the store answers, 503 otherwise.

The token in the URL is the capability: it is HMAC-signed for one customer and
one purpose, so the forms need no CSRF token, and a forged, truncated or
wrong-purpose token gets a 400 page and changes nothing.
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

from mailer.compose.tokens import RESUBSCRIBE, UNSUBSCRIBE, BadToken, make_token, read_token
from mailer.config import Settings
from mailer.contacts import optout
from mailer.store.tables import Customer, utcnow
from mailer.web import answers

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


def mask(email: str) -> str:
    """Enough of an address for its owner to know it, not to harvest it: ``al•••@example.com``."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "•••"
    return f"{local[: 1 if len(local) <= 4 else 2]}•••@{domain}"


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

    def page(
        status: int, title: str, heading: str, *paragraphs: str, button: str = "", action: str = ""
    ) -> Response:
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

    def address_of(customer_id: int) -> tuple[str, bool] | None:
        with Session(engine) as session:
            row = session.execute(
                select(col(Customer.email), col(Customer.unsubscribed_at)).where(
                    col(Customer.id) == customer_id
                )
            ).first()
        return None if row is None else (row[0], row[1] is not None)

    def link(view: str, token: str) -> str:
        # ".view" is the blueprint the request came in on, so the link keeps its prefix (and the
        # X-Forwarded-Prefix of a trusted proxy). Scheme and host are spelled out only when a trusted
        # proxy told us the visitor's: otherwise they may be the proxy's (http://127.0.0.1:8025), and
        # a path alone keeps whatever scheme and host the visitor used.
        return url_for(f".{view}", token=token, _external=bool(hops))

    def unsubscribed_page(customer_id: int, email: str, *, just_now: bool) -> Response:
        undo = make_token(secret, customer_id, RESUBSCRIBE, issued=now())
        heading = "You are unsubscribed" if just_now else "You are already unsubscribed"
        return page(
            200,
            "Unsubscribed",
            heading,
            f"{mask(email)} will get no more emails like this from {sender.company}.",
            "Changed your mind? You can undo this.",
            button="Resubscribe",
            action=link("resubscribe", undo),
        )

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

    @routes.get("/u/<token>")
    def confirm(token: str) -> Response:
        customer_id = read_token(secret, token, UNSUBSCRIBE)
        found = address_of(customer_id)
        if found is None:
            return not_found()
        email, unsubscribed = found
        if unsubscribed:
            return unsubscribed_page(customer_id, email, just_now=False)
        return page(
            200,
            "Unsubscribe",
            "Unsubscribe?",
            f"Stop the emails {sender.company} sends to {mask(email)}?",
            button="Unsubscribe",
            action=link("unsubscribe", token),
        )

    @routes.post("/u/<token>")
    def unsubscribe(token: str) -> Response:
        customer_id = read_token(secret, token, UNSUBSCRIBE)
        one_click = _is_one_click()
        source = optout.Source.ONE_CLICK if one_click else optout.Source.PAGE
        change = optout.unsubscribe(engine, customer_id, source, now())
        if change is optout.Change.UNKNOWN:
            return not_found()
        if one_click:
            return Response("unsubscribed\n", mimetype="text/plain")
        found = address_of(customer_id)
        if found is None:
            return not_found()
        return unsubscribed_page(customer_id, found[0], just_now=change is optout.Change.CHANGED)

    @routes.post("/r/<token>")
    def resubscribe(token: str) -> Response:
        customer_id = read_token(secret, token, RESUBSCRIBE, max_age=UNDO_WINDOW, now=now())
        change = optout.resubscribe(engine, customer_id, now())
        if change is optout.Change.UNKNOWN:
            return not_found()
        again = make_token(secret, customer_id, UNSUBSCRIBE)
        return page(
            200,
            "Resubscribed",
            "You are subscribed again",
            f"Thank you for staying with {sender.company}.",
            button="Unsubscribe after all",
            action=link("unsubscribe", again),
        )

    answers.register(app, settings, engine, now=now, page=page)  # "how did we do?" (mailer/web/answers.py)
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
