"""The answer links of "how did we do?" and the owner's "mark handled" link, on the ``mailer serve`` app.

    GET  /a/<token>         the answer page (``templates/email/_pages/answer.html``, which marketers
                            edit): the answer the link named selected, a comment box and a Send
                            button. It records nothing (but see "counting clicks" below).
    POST /a/<token>         from that page: record the answer and comment (an answer given before
                            is changed), then thank them on the same page.
    GET  /feedback/<token>  for the account owner: what was answered, and a button. Changes nothing.
    POST /feedback/<token>  mark it handled: appreciation to the customer resumes.

Why a GET records nothing: mail scanners (Microsoft Safe Links, Mimecast, Proofpoint…) fetch every
link of a message before its reader sees it, so an answer recorded on the click would be an answer
nobody gave. The token in the URL names the send-log row and the answer and is signed (the same
HMAC as unsubscribe links) and expires after ``[feedback] link_max_age``; a forged, altered,
truncated, other-row or expired token gets 400 and changes nothing. The form carries a stamp signed
for the page's own token, and a request a browser marks ``Sec-Fetch-Site: cross-site`` is refused,
so another site cannot post answers in a visitor's name (the forms work without JavaScript).

Counting clicks (``[feedback] count_clicks = true``, off by default): the GET itself records the
answer, source ``click``, unless the request looks like a scanner (:func:`scanner_signs`):

- it says it is a prefetch (``Purpose``/``Sec-Purpose: prefetch``, ``X-Moz: prefetch``);
- its User-Agent is missing or names a tool, bot or mail-security product (curl, python-requests,
  HeadlessChrome, "bot", "scan", "preview", Safe Links' and other gateways' names…);
- it does not ask for a web page the way browsers do (``Accept`` with ``text/html`` and an
  ``Accept-Language``), or a browser that sends Fetch Metadata says the navigation was not the
  person's own (``Sec-Fetch-User`` missing on a ``Sec-Fetch-Mode: navigate`` request);
- it comes within :data:`SCANNER_WINDOW` of the message's delivery, when scanners do their work.

Limits: a gateway that "detonates" links in a full browser, later, with a person's headers, passes
every one of these tests, and one that fetches from behind the reader's own proxy looks like them.
The page a counted click shows still offers the Send button, and a POST overrides the click.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, request, url_for
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.compose.answers import ANSWER_PAGE, find_campaign, page_context
from mailer.compose.render import Renderer, RenderError
from mailer.compose.tokens import (
    HANDLED,
    BadToken,
    check_form_stamp,
    form_stamp,
    read_answer_token,
    read_token,
)
from mailer.config import Campaign, Settings
from mailer.outbox import feedback
from mailer.service.project import SHIPPED_TEMPLATES
from mailer.store.tables import Customer, Feedback, SendLog

log = logging.getLogger(__name__)

SCANNER_WINDOW = timedelta(minutes=2)
FORM_MAX_AGE = timedelta(days=1)  # a page left open longer is loaded again before its answer is taken
MAX_COMMENT_FIELD = 8000

_SCANNER_AGENTS = re.compile(
    r"bot\b|crawl|spider|scan|preview|headless|python|curl|wget|go-http|java/|okhttp|libwww|httpclient|"
    r"safelinks|barracuda|mimecast|proofpoint|symantec|forcepoint|trendmicro|sophos|fortiguard|"
    r"microsoft office|ms-office|outlook-ios|nessus|zgrab|axios|node-fetch|aiohttp|httpx",
    re.I,
)

Page = Callable[..., Response]  # mailer.web.unsubscribe's house page: (status, title, heading, *paragraphs, …)


def scanner_signs(headers: Mapping[str, str], sent_at: datetime | None, now: datetime) -> str | None:
    """PURE: why a GET on an answer link looks like a machine's rather than a person's; None if it does not."""
    lower = {k.lower(): v for k, v in headers.items()}
    purpose = " ".join(lower.get(k, "") for k in ("purpose", "sec-purpose", "x-moz")).lower()
    if "prefetch" in purpose or "prerender" in purpose:
        return "a prefetch"
    agent = lower.get("user-agent", "")
    if not agent.strip():
        return "no User-Agent"
    if _SCANNER_AGENTS.search(agent):
        return f"User-Agent of a tool or scanner: {agent[:80]}"
    if "text/html" not in lower.get("accept", "") or not lower.get("accept-language"):
        return "not a browser's request for a page"
    if lower.get("sec-fetch-mode") == "navigate" and lower.get("sec-fetch-user") != "?1":
        return "a navigation the person did not make"
    if sent_at is not None and timedelta(0) <= now - sent_at < SCANNER_WINDOW:
        return "within two minutes of delivery"
    return None


def register(app: Flask, settings: Settings, engine: Engine, *, now: Callable[[], datetime], page: Page) -> None:
    """Add the answer and "mark handled" routes to the ``mailer serve`` app, bare and under its path."""
    secret = settings.sender.secret.reveal()
    routes = Blueprint("answers", __name__)
    project_pages = Renderer(settings.render.templates, None, auto_reload=True)  # edits show on reload
    shipped_pages = Renderer(SHIPPED_TEMPLATES, None)
    hops = settings.web.trusted_proxies

    def link(view: str, token: str) -> str:
        return url_for(f".{view}", token=token, _external=bool(hops))  # see mailer.web.unsubscribe.link

    def campaign_of(question: feedback.Asked) -> Campaign:
        campaign = find_campaign(settings.campaigns, question.campaign)
        if campaign is None or not campaign.ask:
            raise Closed()
        return campaign

    def read(token: str) -> tuple[feedback.Asked, Campaign, int]:
        row_id, answer = read_answer_token(secret, token, max_age=settings.feedback.link_max_age, now=now())
        question = feedback.asked(engine, row_id)
        if question is None:
            raise Gone()
        campaign = campaign_of(question)
        if not 1 <= answer <= len(campaign.scale):
            raise BadToken("answer not on the campaign's scale")  # signed for a scale since shortened
        return question, campaign, answer

    def answer_page(
        token: str, question: feedback.Asked, campaign: Campaign, selected: int, comment: str, *, thanks: bool
    ) -> Response:
        context = page_context(
            settings.sender, campaign, first_name=question.first_name, about=question.subject, selected=selected,
            comment=comment, action=link("answer_post", token), stamp=form_stamp(secret, token, now()), thanks=thanks,
        )
        renderer = project_pages if (settings.render.templates / ANSWER_PAGE).is_file() else shipped_pages
        try:
            html = renderer.render_file(ANSWER_PAGE, context)
        except RenderError as exc:
            log.error("the answer page does not render: %s", exc)
            return page(500, "Sorry", "Something went wrong on our side", "Please reply to the email instead.")
        return Response(html, status=200, mimetype="text/html")

    @routes.errorhandler(BadToken)
    def bad_token(exc: BadToken) -> Response:
        log.info("refused an answer or handled link from %s: %s", request.remote_addr, exc)
        return page(
            400, "Invalid link", "This link is not valid",
            "It may have been cut short when it was copied, or it has expired. Nothing was changed.",
            "You can always reply to the email itself: a person reads every answer.",
        )

    @routes.errorhandler(Gone)
    def gone(_exc: Gone) -> Response:
        return page(404, "Not found", "We could not find this message", "Nothing was changed.")

    @routes.errorhandler(Closed)
    def closed(_exc: Closed) -> Response:
        return page(
            410, "Closed", "This question is closed",
            "We no longer collect answers here. Nothing was changed. You can always reply to the email itself.",
        )

    @routes.get("/a/<token>")
    def answer_get(token: str) -> Response:
        question, campaign, answer = read(token)
        comment = question.comment
        if settings.feedback.count_clicks:
            signs = scanner_signs(dict(request.headers), _sent_at(engine, question.row_id), now())
            if signs is None:
                feedback.record_answer(
                    engine, question, campaign, answer, comment, feedback.Source.CLICK, now(),
                    settings.feedback, settings.sender,
                )
            else:
                log.info("answer link fetched, not counted (%s)", signs)
        return answer_page(token, question, campaign, answer, comment, thanks=False)

    @routes.post("/a/<token>")
    def answer_post(token: str) -> Response:
        question, campaign, named = read(token)
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            raise BadToken("a form posted from another site")
        check_form_stamp(secret, token, request.form.get("stamp", ""), max_age=FORM_MAX_AGE, now=now())
        raw = request.form.get("answer", str(named))
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= len(campaign.scale):
            raise BadToken(f"answer {raw[:20]!r} is not on the scale")
        comment = request.form.get("comment", "")[:MAX_COMMENT_FIELD]
        feedback.record_answer(
            engine, question, campaign, int(raw), comment, feedback.Source.PAGE, now(),
            settings.feedback, settings.sender,
        )
        return answer_page(token, question, campaign, int(raw), comment.strip(), thanks=True)

    @routes.get("/feedback/<token>")
    def handled_get(token: str) -> Response:
        feedback_id = read_token(secret, token, HANDLED, max_age=settings.feedback.handled_link_max_age, now=now())
        found = _describe(engine, feedback_id)
        if found is None:
            raise Gone()
        who, answer, open_ = found
        if not open_:
            return page(200, "Handled", "Already handled", f"The answer from {who} ({answer}) is marked handled.")
        return page(
            200, "Mark handled", "Mark this answer handled?",
            f"{who} answered {answer}. Once handled, {settings.sender.company}'s automated notes to them resume.",
            button="Mark handled", action=link("handled_post", token),
        )

    @routes.post("/feedback/<token>")
    def handled_post(token: str) -> Response:
        feedback_id = read_token(secret, token, HANDLED, max_age=settings.feedback.handled_link_max_age, now=now())
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            raise BadToken("a form posted from another site")
        outcome = feedback.resolve(engine, feedback_id, "link in the notice", now())
        if outcome is feedback.Resolution.UNKNOWN:
            raise Gone()
        return page(200, "Handled", "Marked handled", "Thank you for looking after this customer.")

    app.register_blueprint(routes)
    prefix = urlsplit(settings.sender.unsubscribe_url).path.rstrip("/")
    if prefix:
        app.register_blueprint(routes, name="answers_at_path", url_prefix=prefix)


class Gone(Exception):
    """The message or answer a valid token names is no longer in the store."""


class Closed(Exception):
    """The campaign that asked no longer asks (or is gone from mailer.toml)."""


def _sent_at(engine: Engine, row_id: int) -> datetime | None:
    with Session(engine) as session:
        return session.execute(select(col(SendLog.sent_at)).where(col(SendLog.id) == row_id)).scalar_one_or_none()


def _describe(engine: Engine, feedback_id: int) -> tuple[str, str, bool] | None:
    """(who answered, the answer, whether it still waits for a person) for the owner's page."""
    with Session(engine) as session:
        found: Any = session.execute(
            select(
                col(Customer.email), col(Customer.first_name), col(Customer.last_name), col(Feedback.label),
                col(Feedback.scale), col(Feedback.unhappy_since),
            )
            .join(Customer, col(Customer.id) == col(Feedback.customer_id))
            .where(col(Feedback.id) == feedback_id)
        ).first()
    if found is None:
        return None
    email, first, last, label, scale, since = found
    name = " ".join(p for p in (first, last) if p) or email
    answer = f"{label} out of {scale}" if label.isdigit() else label
    return name, answer, since is not None
