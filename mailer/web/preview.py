"""See a template as a customer would, before any customer does.

:func:`render_preview` renders one template for a customer from the store or
a built-in sample one (``mailer preview``); :func:`send_test` sends it once
through the configured transport, logged as a test that never counts as the
occasion (``mailer send-test``); :func:`create_app` is the local preview page
(``mailer preview --serve``): templates listed, HTML and text side by side with
the subject, problems shown in place, and a reload when a template file
changes. The page is a Flask blueprint, so ``mailer serve`` can mount it too.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    render_template_string,
    request,
    url_for,
)
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer import store
from mailer.compose.answers import ANSWER_PAGE, page_samples, sample_ask
from mailer.compose.checker import Problem, check_email, template_kinds
from mailer.compose.context import sample_customers, sample_gift, sample_occasion, template_context
from mailer.compose.maker import envelope_for
from mailer.compose.message import build_message
from mailer.compose.render import Rendered, Renderer, RenderError
from mailer.compose.returnpath import envelope_sender
from mailer.compose.tokens import make_token
from mailer.config import OCCASION_KINDS, Campaign, Settings
from mailer.config.locales import LocaleProblem, normalize_locale
from mailer.delivery.outcome import final_status
from mailer.delivery.transport import Transport
from mailer.errors import MailerError
from mailer.store.tables import Customer, Interaction, SendLog, SendStatus, utcnow

DEFAULT_SAMPLE = "sample-full"
TEST_PURPOSE = "test-send"  # test messages carry a token the unsubscribe endpoint refuses


@dataclass
class Preview:
    """What one template renders to for one customer, or the problems that stopped it."""

    name: str
    customer_label: str
    kind: str
    occasion: dict[str, Any]
    rendered: Rendered | None = None
    problems: list[str] = field(default_factory=list)
    locale: str = ""  # the reader's locale the preview is for


def find_customer(engine: Engine | None, external_id: str) -> Customer:
    """A built-in sample (``sample-full``, ``sample-email-only``, ``sample-unicode``) or a stored customer."""
    samples = sample_customers()
    if external_id in samples:
        return samples[external_id]
    if engine is None:
        raise MailerError(f"no store to look up customer {external_id!r}; samples: {', '.join(samples)}")
    with Session(engine, expire_on_commit=False) as session:
        customer: Customer | None = session.execute(
            select(Customer).where(col(Customer.external_id) == external_id)
        ).scalar_one_or_none()
    if customer is None:
        raise MailerError(f"no customer with external_id {external_id!r} in the store (samples: {', '.join(samples)})")
    return customer


def _campaign_for(settings: Settings, name: str, kind: str) -> Campaign | None:
    return next((c for c in settings.campaigns if c.template == name and c.occasion == kind), None)


def occasion_for(
    settings: Settings, engine: Engine | None, name: str, customer: Customer, day: date
) -> tuple[str, dict[str, Any]]:
    """The occasion kind the template is sent for and a plausible occasion for this customer on ``day``."""
    kinds = template_kinds(name, settings.campaigns)
    kind = kinds[0] if kinds else OCCASION_KINDS[0]
    occasion = sample_occasion(kind, customer, day, _campaign_for(settings, name, kind))
    if kind == "follow_up" and engine is not None and customer.id is not None:
        latest = _latest_interaction(engine, customer.id, occasion["interaction"]["kind"])
        if latest is not None:
            occasion["interaction"] = {
                "id": latest.id,
                "kind": latest.kind,
                "date": latest.occurred_at.date(),
                "reference": latest.reference or "",
                "amount": latest.amount,
            }
            occasion["key"] = f"follow_up:{latest.id}"
    return kind, occasion


def _latest_interaction(engine: Engine, customer_id: int, kind: str) -> Interaction | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.execute(
            select(Interaction)
            .where(Interaction.customer_id == customer_id, Interaction.kind == kind)  # type: ignore[arg-type]
            .order_by(col(Interaction.occurred_at).desc())
            .limit(1)
        ).scalar_one_or_none()


def render_preview(
    settings: Settings,
    renderer: Renderer,
    name: str,
    customer: Customer,
    day: date,
    engine: Engine | None = None,
    unsubscribe_url: str | None = None,
    locale: str = "",
) -> Preview:
    """Render ``name`` for ``customer`` (in ``locale``, else theirs); render problems go in ``problems``, not raised."""
    if name not in renderer.names():
        raise MailerError(
            f"{renderer.templates_dir / name}: no such template (templates: {', '.join(renderer.names())})"
        )
    kind, occasion = occasion_for(settings, engine, name, customer, day)
    url = unsubscribe_url or f"{settings.sender.unsubscribe_url}/u/preview"
    sender = settings.sender
    try:
        reader = normalize_locale(locale) if locale else customer.locale or sender.locale
    except LocaleProblem as exc:
        raise MailerError(f"locale: {exc}") from None
    preview = Preview(name, customer.external_id, kind, occasion, locale=reader)
    try:
        campaign = _campaign_for(settings, name, kind)
        ask = sample_ask(campaign, sender.unsubscribe_url)
        gift = sample_gift(day, campaign.gift.label) if campaign and campaign.gift else None
        context = template_context(customer, occasion, sender, url, ask, gift=gift)
        preview.rendered = renderer.render(name, context, reader, default_locale=sender.locale)
    except RenderError as exc:
        preview.problems.append(str(exc))
    return preview


def open_store(settings: Settings) -> tuple[Engine | None, str]:
    """The store's engine and "", or None and why not (the preview then offers the samples only)."""
    engine = store.make_engine(settings.store.url)
    try:
        store.check_schema(engine)
    except MailerError as exc:
        engine.dispose()
        return None, str(exc)
    return engine, ""


# ---- send-test -------------------------------------------------------------------------------------


def choose_test_customer(engine: Engine, external_id: str | None, to_address: str) -> Customer:
    """``--customer``, else the stored customer with the test address, else the first stored customer.

    A test send is logged in the send log, whose rows belong to a stored customer.
    """
    if external_id:
        return find_customer(engine, external_id)
    with Session(engine, expire_on_commit=False) as session:
        customer: Customer | None = (
            session.execute(
                select(Customer).where(col(Customer.email) == to_address).order_by(col(Customer.id)).limit(1)
            ).scalar_one_or_none()
            or session.execute(select(Customer).order_by(col(Customer.id)).limit(1)).scalar_one_or_none()
        )
    if customer is None:
        raise MailerError(
            "the store has no customers yet: a test send renders for (and is logged against) one; "
            "import some with `mailer import customers FILE`"
        )
    return customer


def send_test(
    settings: Settings, engine: Engine, transport: Transport, name: str, to_address: str, customer: Customer, day: date
) -> SendLog:
    """Send one ``[TEST]`` message and log it with ``is_test`` and a ``test:<uuid>`` key; returns the log row.

    The row is committed as ``sending`` before the transport is used, like any
    send. It never counts as the occasion (the planner ignores test rows), the
    customer's last-emailed time is left alone, and its unsubscribe link is
    signed for another purpose so clicking it unsubscribes nobody.
    """
    if customer.id is None:
        raise MailerError("a test send needs a customer from the store")
    renderer = Renderer(settings.render.templates, settings.render.inliner)
    token = make_token(settings.sender.secret.reveal(), customer.id, TEST_PURPOSE)
    unsubscribe_url = f"{settings.sender.unsubscribe_url}/u/{token}"
    preview = render_preview(settings, renderer, name, customer, day, engine, unsubscribe_url)
    if preview.rendered is None:
        raise MailerError(preview.problems[0])
    rendered = Rendered(f"[TEST] {preview.rendered.subject}", preview.rendered.text, preview.rendered.html)
    envelope = envelope_for(customer, settings.sender, unsubscribe_url, to_address=to_address)
    msg = build_message(rendered, envelope, settings.sender)
    campaign = _campaign_for(settings, name, preview.kind)
    now = utcnow()
    row = SendLog(
        customer_id=customer.id,
        campaign=campaign.name if campaign else name,
        occasion_key=f"test:{uuid.uuid4()}",
        occasion_kind=preview.kind,
        due_date=day,
        occasion=_jsonable(preview.occasion),
        template=name,
        status=SendStatus.SENDING,
        reason="test send",
        attempts=1,
        to_address=to_address,
        subject=str(msg["Subject"]),
        message_id=str(msg["Message-ID"]),
        is_test=True,
        created_at=now,
        updated_at=now,
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        session.commit()
        with transport:
            result = transport.send(envelope_sender(settings.sender, row.message_id or ""), to_address, msg)
        row.last_reply = result.reply[:1000]
        row.updated_at = utcnow()
        # The same outcome mapping as real sends; what would be retried there has failed here.
        status, reason = final_status(result) or (SendStatus.FAILED, f"failed: {result.reply}")
        row.status, row.reason = status, f"test send: {reason}"[:1000]
        if status == SendStatus.SENT:
            row.sent_at = row.updated_at
        session.add(row)
        session.commit()
    return row


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


# ---- the preview page --------------------------------------------------------------------------

blueprint = Blueprint("preview", __name__)


def create_app(settings: Settings) -> Flask:
    """A Flask app serving the preview page at ``/`` (``mailer serve`` may mount :data:`blueprint` instead)."""
    app = Flask(__name__)
    configure(app, settings)
    app.register_blueprint(blueprint)
    return app


def configure(app: Flask, settings: Settings) -> None:
    """Give ``app`` what the blueprint needs: settings, a reloading renderer, the store when it opens."""
    engine, why_not = open_store(settings)
    app.extensions["mailer_preview"] = {
        "settings": settings,
        "renderer": Renderer(settings.render.templates, settings.render.inliner, auto_reload=True),
        "engine": engine,
        "no_store": why_not,
    }


def _state() -> dict[str, Any]:
    state: dict[str, Any] = current_app.extensions["mailer_preview"]
    return state


def templates_stamp(templates_dir: Path) -> str:
    """Changes whenever a template file is edited, added or removed."""
    entries = sorted(
        (str(p.relative_to(templates_dir)), p.stat().st_mtime_ns, p.stat().st_size)
        for p in templates_dir.rglob("*")
        if p.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


@blueprint.get("/")
def index() -> str:
    renderer: Renderer = _state()["renderer"]
    names = renderer.names()
    if names:
        return show(names[0])
    return render_template_string(
        PAGE,
        names=[],
        name=None,
        preview=None,
        problems=[f"{renderer.templates_dir}: no templates yet"],
        **_page_vars(None),
    )


@blueprint.get("/stamp")
def stamp() -> Response:
    return jsonify(stamp=templates_stamp(_state()["renderer"].templates_dir))


@blueprint.get("/t/<name>")
def show(name: str) -> str:
    state = _state()
    settings: Settings = state["settings"]
    renderer: Renderer = state["renderer"]
    names = renderer.names()
    if name not in names:
        abort(404)
    customer_id = request.args.get("customer") or DEFAULT_SAMPLE
    problems: list[str] = []
    preview = None
    try:
        day = date.fromisoformat(request.args.get("date") or date.today().isoformat())
        customer = find_customer(state["engine"], customer_id)
        locale = request.args.get("locale") or ""
        preview = render_preview(settings, renderer, name, customer, day, state["engine"], locale=locale)
        problems.extend(preview.problems)
    except (MailerError, ValueError) as exc:
        problems.append(str(exc))
    kinds = template_kinds(name, settings.campaigns)
    checked: list[Problem] = check_email(
        renderer, name, kinds, settings.campaigns, settings.sender, settings.render.inliner
    )
    problems.extend(p.format(settings.base_dir) for p in checked if p.format(settings.base_dir) not in problems)
    return render_template_string(
        PAGE, names=names, name=name, preview=preview, problems=problems, **_page_vars(customer_id)
    )


@blueprint.get("/t/<name>/email.html")
def email_html(name: str) -> Response:
    """The rendered HTML alone, as a mail client would get it (opens in its own tab)."""
    state = _state()
    renderer: Renderer = state["renderer"]
    if name not in renderer.names():
        abort(404)
    customer = find_customer(state["engine"], request.args.get("customer") or DEFAULT_SAMPLE)
    day = date.fromisoformat(request.args.get("date") or date.today().isoformat())
    locale = request.args.get("locale") or ""
    try:
        preview = render_preview(state["settings"], renderer, name, customer, day, state["engine"], locale=locale)
    except MailerError as exc:
        return Response(str(exc), status=422, mimetype="text/plain")
    if preview.rendered is None:
        return Response("\n".join(preview.problems), status=422, mimetype="text/plain")
    return Response(preview.rendered.html, mimetype="text/html")


@blueprint.get("/answer-page")
def answer_page() -> Response:
    """The answer page of "how did we do?" (templates/email/_pages/answer.html); ``?thanks=1`` after Send."""
    state = _state()
    settings: Settings = state["settings"]
    renderer: Renderer = state["renderer"]
    samples = page_samples(settings.sender, [c for c in settings.campaigns if c.ask][:1])
    try:
        html = renderer.render_file(ANSWER_PAGE, samples[1 if request.args.get("thanks") else 0])
    except RenderError as exc:
        return Response(str(exc), status=422, mimetype="text/plain")
    return Response(html, mimetype="text/html")


def _page_vars(customer_id: str | None) -> dict[str, Any]:
    return {
        "customer_id": customer_id or DEFAULT_SAMPLE,
        "samples": list(sample_customers()),
        "day": request.args.get("date") or date.today().isoformat(),
        "locale": request.args.get("locale") or "",
        "no_store": _state()["no_store"],
        "stamp_url": url_for("preview.stamp"),
        "stamp": templates_stamp(_state()["renderer"].templates_dir),
    }


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ name or "templates" }} · mailer preview</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #f6f6f4; }
 header { padding: 10px 20px; background: #2f2a24; color: #fff;
          display: flex; gap: 24px; align-items: center; flex-wrap: wrap; }
 header a { color: #f0d9a8; margin-right: 12px; }
 header a.current { color: #fff; font-weight: bold; text-decoration: none; }
 form { display: inline-flex; gap: 8px; align-items: center; }
 main { padding: 16px 20px; }
 .subject { font-size: 18px; margin: 0 0 12px 0; } .subject span { color: #777; font-size: 14px; }
 .problems { background: #fde8e6; border: 1px solid #e0a39c; color: #7a1d12; padding: 10px 14px; margin: 0 0 14px 0;
             white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 13px; }
 .panes { display: grid; grid-template-columns: 3fr 2fr; gap: 16px; }
 .pane h2 { font-size: 13px; text-transform: uppercase; color: #666; margin: 0 0 6px 0; }
 iframe { width: 100%; height: 780px; border: 1px solid #ccc; background: #fff; }
 pre { background: #fff; border: 1px solid #ccc; padding: 12px; white-space: pre-wrap; font-size: 13px;
       height: 754px; overflow: auto; margin: 0; }
</style></head><body>
<header>
 <strong>mailer preview</strong>
 <nav>{% for n in names %}<a
  href="{{ url_for('preview.show', name=n, customer=customer_id, date=day, locale=locale or None) }}"
  class="{{ 'current' if n == name }}">{{ n }}</a>{% endfor %}
  <a href="{{ url_for('preview.answer_page') }}" target="_blank" id="answer-page">answer page</a>
  <a href="{{ url_for('preview.answer_page', thanks=1) }}" target="_blank">after Send</a></nav>
 {% if name %}<form method="get" action="{{ url_for('preview.show', name=name) }}">
  <label>customer <input name="customer" value="{{ customer_id }}" list="samples" size="18"></label>
  <datalist id="samples">{% for s in samples %}<option value="{{ s }}">{% endfor %}</datalist>
  <label>date <input type="date" name="date" value="{{ day }}"></label>
  <label>language <input name="locale" value="{{ locale }}" placeholder="the customer's" size="8"
   title="a locale such as de or de-AT; empty: the customer's own"></label>
  <button>show</button>
 </form>{% endif %}
 <span>{{ "samples only: " ~ no_store if no_store else "a customer's external_id, or a sample" }}</span>
</header>
<main>
{% if problems %}<div class="problems" id="problems">{{ problems | join("\n") }}</div>{% endif %}
{% if preview and preview.rendered %}
 <p class="subject" id="subject"><span>Subject:</span> {{ preview.rendered.subject }}
  <span>· {{ preview.kind }} for {{ preview.customer_label }} in {{ preview.locale }}
  ({{ (preview.rendered.locale or "default") ~ " templates" }}) ·
  <a href="{{ url_for('preview.email_html', name=name, customer=customer_id, date=day, locale=locale or None) }}"
     target="_blank">open HTML alone</a></span></p>
 <div class="panes">
  <div class="pane"><h2>HTML</h2>
   {# sandboxed: the email gets its own origin and runs no script, as in a mail client #}
   <iframe id="html" title="HTML part" sandbox="allow-popups" srcdoc="{{ preview.rendered.html }}"></iframe></div>
  <div class="pane"><h2>Plain text</h2><pre id="text">{{ preview.rendered.text }}</pre></div>
 </div>
{% endif %}
</main>
<script>
 // Reload when a template file changes: poll a stamp of the folder's file times.
 const initial = {{ stamp | tojson }};
 setInterval(async () => {
   try {
     const reply = await fetch({{ stamp_url | tojson }}, {cache: "no-store"});
     if ((await reply.json()).stamp !== initial) location.reload();
   } catch (e) { /* the preview server restarted or stopped: try again next time */ }
 }, 1000);
</script>
</body></html>
"""
