"""``/admin/`` on ``mailer serve``: a read-only view of the send log for support people, and one button.

Off unless ``[admin] password_env``/``password_file`` is set (then ``/admin/`` answers 404). Every
page wants HTTP Basic with user ``admin`` and that password, compared in constant time; anything
else gets 401. Pages are rendered on the server by autoescaped Jinja, with no script and nothing
fetched from elsewhere (the forecast chart is inline SVG), so the app's strict CSP holds.

    GET  /admin/                     the send log, filtered by customer (external id or email),
                                     campaign, status and date, every row with its reason
    GET  /admin/customer/<id>        one customer's timeline: every send-log row, opt-outs, pauses, and
                                     what is coming in the next 30 days (``?from=`` another first day)
    GET  /admin/suppressions         who gets less mail than they could, and where that came from
    GET  /admin/forecast             the coming days' sends as a bar chart (a big day stands out)
    GET  /admin/requeue/<row>        the confirmation step for an ``unknown`` row (changes nothing)
    POST /admin/requeue/<row>        requeue it (mailer/outbox/recovery.py), with the page's CSRF value

The CSRF value is an HMAC of the row id under the sender secret (as the preference page does for a
link), so a form on another site cannot post it; a forged or missing one gets 403 and nothing changes.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, request, url_for
from jinja2 import DictLoader, Environment, select_autoescape
from sqlalchemy import Engine, func, or_, select
from sqlmodel import Session, col

from mailer.config import Settings
from mailer.contacts import optout_stats, preferences
from mailer.outbox import history
from mailer.outbox.recovery import requeue
from mailer.planning.forecast import forecast
from mailer.planning.upcoming import upcoming
from mailer.store import StoreError
from mailer.store.tables import Customer, SendLog, SendStatus
from mailer.web import calendar_chart
from mailer.web.preferences import ForgedForm, check_csrf, csrf_value

log = logging.getLogger(__name__)

USER = "admin"
PREFIX = "/admin"
STATUSES = tuple(s.value for s in SendStatus)
MAX_FORECAST_DAYS = 366
COMING_DAYS = 30  # how far a customer's timeline looks ahead
_REQUEUED_BY_HAND = "requeued by hand"

_BASE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="robots" content="noindex">
<title>{{ title }} · mailer admin</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 0; background: #f6f5f2; }
nav { background: #2d5b3f; padding: .6rem 1rem; }
nav a { color: #fff; margin-right: 1.2rem; text-decoration: none; font-weight: 600; }
main { padding: 1rem 1.5rem; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #eee; }
.status-unknown, .status-failed, .status-bounced { color: #a0201a; font-weight: 600; }
.status-sent { color: #1d6b35; }
.notice { background: #fff7d6; border: 1px solid #e3c75a; padding: .6rem 1rem; }
.error { background: #fde4e1; border: 1px solid #d98b82; padding: .6rem 1rem; }
form.filters label { margin-right: .8rem; }
button { font: inherit; padding: .4rem 1rem; border: 0; border-radius: 4px; background: #2d5b3f; color: #fff; }
.big { fill: #c0392b; } .bar { fill: #5b8c6c; }
</style>
</head>
<body>
<nav><a href="{{ url_for('admin.send_log') }}">Send log</a>
<a href="{{ url_for('admin.suppressions') }}">Suppressions</a>
<a href="{{ url_for('admin.calendar') }}">Forecast</a></nav>
<main>
<h1 id="heading">{{ title }}</h1>
{% if notice %}<p class="notice" id="notice">{{ notice }}</p>{% endif %}
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
{% block body %}{% endblock %}
</main>
</body>
</html>
"""

_ROWS = """
<table id="rows">
<tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}<th></th></tr>
{% for row in rows %}
<tr id="row-{{ row.id }}" class="row">
{% for h in headers %}
<td class="{{ h }}{% if h == 'status' %} status-{{ row[h] }}{% endif %}">
{%- if h == 'customer' %}<a href="{{ url_for('admin.customer', external_id=row[h]) }}">{{ row[h] }}</a>
{%- else %}{{ row[h] if row[h] is not none else '' }}{% endif %}</td>
{% endfor %}
<td>{% if row.status == 'unknown' %}<a class="requeue"
 href="{{ url_for('admin.confirm_requeue', row_id=row.id) }}">Requeue…</a>{% endif %}</td>
</tr>
{% else %}
<tr><td colspan="{{ headers|length + 1 }}" id="empty">No send-log rows match.</td></tr>
{% endfor %}
</table>
"""

TEMPLATES = {
    "base.html": _BASE,
    "rows.html": _ROWS,
    "log.html": """{% extends "base.html" %}{% block body %}
<form class="filters" method="get">
<label>Customer <input name="customer" value="{{ form.customer }}" placeholder="external id or email"></label>
<label>Campaign <select name="campaign"><option value="">(any)</option>
{% for c in campaigns %}<option value="{{ c }}"{% if c == form.campaign %} selected{% endif %}>{{ c }}</option>
{% endfor %}
</select></label>
<label>Status <select name="status"><option value="">(any)</option>
{% for s in statuses %}<option{% if s == form.status %} selected{% endif %}>{{ s }}</option>{% endfor %}
</select></label>
<label>From <input type="date" name="from" value="{{ form['from'] }}"></label>
<label>To <input type="date" name="to" value="{{ form.to }}"></label>
<button type="submit">Search</button>
</form>
<p id="count">{{ rows|length }} row{{ '' if rows|length == 1 else 's' }}
{%- if rows|length >= limit %} (the newest {{ limit }}; narrow the search){% endif %}.</p>
{% include "rows.html" %}
{% endblock %}""",
    "customer.html": """{% extends "base.html" %}{% block body %}
<dl id="who">
<dt>Email</dt><dd>{{ who.email }}</dd>
<dt>Name</dt><dd>{{ who.first_name or '' }} {{ who.last_name or '' }}</dd>
<dt>Customer since</dt><dd>{{ who.customer_since }}</dd>
<dt>Last emailed</dt><dd>{{ who.last_emailed_at or 'never' }}</dd>
</dl>
<h2>Opt-outs and suppressions</h2>
<ul id="wishes">
{% for line in wishes %}<li>{{ line }}</li>{% else %}<li>None: this customer can get every campaign.</li>{% endfor %}
</ul>
<h2>Every send-log row</h2>
{% include "rows.html" %}
<h2>Coming from {{ start }} ({{ days }} days)</h2>
<table id="coming"><tr><th>due</th><th>campaign</th><th>verdict</th><th>reason</th></tr>
{% for c in coming %}<tr class="coming verdict-{{ c.verdict }}"><td class="due">{{ c.due }}</td>
<td class="campaign">{{ c.campaign }}</td><td class="verdict">{{ c.verdict }}</td>
<td class="reason">{{ c.reason }}</td></tr>
{% else %}<tr><td colspan="4" id="nothing-coming">Nothing is due for this customer in these days.</td></tr>{% endfor %}
</table>
{% endblock %}""",
    "suppressions.html": """{% extends "base.html" %}{% block body %}
<h2>By campaign and source</h2>
<table id="counts"><tr><th>campaign</th><th>kind</th><th>source</th><th>count</th></tr>
{% for c in counts %}<tr><td>{{ c[0] }}</td><td>{{ c[1] }}</td><td>{{ c[2] }}</td><td>{{ c[3] }}</td></tr>{% endfor %}
</table>
<h2>Everyone</h2>
<table id="listed"><tr><th>customer</th><th>email</th><th>state</th><th>since</th><th>source</th><th>detail</th></tr>
{% for r in listed %}<tr class="listed">
<td><a href="{{ url_for('admin.customer', external_id=r.external_id) }}">{{ r.external_id }}</a></td>
<td>{{ r.email }}</td><td>{{ r.state }}</td><td>{{ r.since }}</td><td>{{ r.source }}</td><td>{{ r.detail }}</td></tr>
{% else %}<tr><td colspan="6">Nobody has opted out or been suppressed.</td></tr>{% endfor %}
</table>
{% endblock %}""",
    "forecast.html": """{% extends "base.html" %}{% block body %}
<form class="filters" method="get">
<label>From <input type="date" name="from" value="{{ start }}"></label>
<label>Days <input type="number" name="days" min="1" max="{{ max_days }}" value="{{ days }}"></label>
<button type="submit">Show</button>
</form>
<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{{ width }}" height="{{ height }}"
 viewBox="0 0 {{ width }} {{ height }}" role="img" aria-label="messages to send per day">
{% for b in bars %}<g class="day{% if b.big %} stands-out{% endif %}" data-day="{{ b.day }}">
<title>{{ b.day }}: {{ b.send }} to send, {{ b.defer }} deferred, {{ b.skip }} skipped</title>
<rect class="{{ 'big' if b.big else 'bar' }}" x="{{ '%.1f'|format(b.x) }}" y="{{ '%.1f'|format(b.y) }}"
 width="{{ '%.1f'|format(b.width) }}" height="{{ '%.1f'|format(b.height) }}"/>
{% if b.big %}<text x="{{ '%.1f'|format(b.x) }}" y="{{ '%.1f'|format(b.label_y) }}"
 font-size="11">{{ b.send }}</text>{% endif %}
<text x="{{ '%.1f'|format(b.x) }}" y="{{ baseline + 14 }}" font-size="9">{{ b.day.day }}</text>
</g>{% endfor %}
</svg>
{% if big %}<p class="notice" id="big-days">Big days:
{% for b in big %}{{ b.day }} ({{ b.send }} to send){{ ', ' if not loop.last }}{% endfor %}.</p>{% endif %}
<table id="days"><tr><th>day</th><th>send</th><th>defer</th><th>skip</th></tr>
{% for b in bars if b.send or b.defer or b.skip %}
<tr><td>{{ b.day }}</td><td>{{ b.send }}</td><td>{{ b.defer }}</td><td>{{ b.skip }}</td></tr>{% endfor %}
</table>
{% endblock %}""",
    "requeue.html": """{% extends "base.html" %}{% block body %}
{% include "rows.html" %}
{% if ask %}
<p>This message may or may not have reached {{ rows[0].to }}: look for its Message-ID at the relay first.
Requeueing sends it again with the next pass.</p>
<form method="post" action="{{ url_for('admin.requeue_row', row_id=rows[0].id) }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit" id="confirm">Yes, requeue row {{ rows[0].id }}</button>
</form>
{% endif %}
{% endblock %}""",
}


def register(app: Flask, settings: Settings, engine: Engine, *, now: Callable[[], datetime]) -> None:
    """Add ``/admin/`` to the app when ``[admin]`` has a password; otherwise leave it out (404)."""
    if not settings.admin.enabled:
        return
    password = settings.admin.password.reveal()  # read now: a missing password fails at start
    secret = settings.sender.secret.reveal()
    zone = ZoneInfo(settings.sender.timezone)
    campaigns = [c.name for c in settings.campaigns]
    pages = Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True))
    pages.globals["url_for"] = url_for
    admin = Blueprint("admin", __name__)

    def render(name: str, status: int = 200, **context: Any) -> Response:
        html = pages.get_template(name).render({"notice": "", "error": "", **context})
        return Response(html, status=status, mimetype="text/html")

    @admin.before_request
    def authenticate() -> Response | None:
        if _authorized(request.authorization, password):
            return None
        log.info("refused an admin request from %s", request.remote_addr)
        challenge = {"WWW-Authenticate": 'Basic realm="mailer admin", charset="UTF-8"'}
        return Response("the admin view needs the [admin] password (user admin)\n", status=401,
                        mimetype="text/plain", headers=challenge)

    @admin.get("/")
    def send_log() -> Response:
        form = {key: request.args.get(key, "").strip() for key in ("customer", "campaign", "status", "from", "to")}
        limit = 500
        try:
            since = _day_start(form["from"], zone)
            until = _day_start(form["to"], zone, plus_days=1)
        except ValueError:
            return render("log.html", 400, title="Send log", form=form, campaigns=campaigns, statuses=STATUSES,
                          headers=[], rows=[], limit=limit, error="Dates look like 2026-11-23.")
        error = ""
        external_id = None
        with Session(engine) as session:
            if form["customer"]:
                external_id = _find_customer(session, form["customer"])
                if external_id is None:
                    error = f"No customer has the external id or email {form['customer']!r}."
            headers, rows = ([], []) if error else history.listing(
                session, status=form["status"] or None, campaign=form["campaign"] or None,
                customer=external_id, since=since, until=until, limit=limit,
            )
        return render("log.html", title="Send log", form=form, campaigns=campaigns, statuses=STATUSES,
                      headers=headers, rows=[dict(zip(headers, r, strict=True)) for r in rows], limit=limit,
                      error=error)

    @admin.get("/customer/<external_id>")
    def customer(external_id: str) -> Response:
        try:
            start = date.fromisoformat(request.args["from"]) if request.args.get("from") else None
        except ValueError:
            return render("log.html", 400, title="Send log", form={}, campaigns=campaigns, statuses=STATUSES,
                          headers=[], rows=[], limit=0, error="Dates look like 2026-11-23.")
        start = start or now().astimezone(zone).date()
        with Session(engine) as session:
            who = session.execute(select(Customer).where(col(Customer.external_id) == external_id)).scalar_one_or_none()
            if who is None or who.id is None:
                return render("log.html", 404, title="Send log", form={}, campaigns=campaigns, statuses=STATUSES,
                              headers=[], rows=[], limit=0, error=f"No customer {external_id!r}.")
            headers, rows = history.listing(session, customer=external_id, limit=10_000)
            coming = upcoming(session, settings, who.id, start, COMING_DAYS)
            session.expunge(who)
        return render("customer.html", title=f"Customer {external_id}", who=who, headers=headers,
                      rows=[dict(zip(headers, r, strict=True)) for r in rows], wishes=_wishes(engine, who),
                      coming=coming, start=start, days=COMING_DAYS)

    @admin.get("/suppressions")
    def suppressions() -> Response:
        return render("suppressions.html", title="Suppressions and opt-outs",
                      counts=optout_stats.counts(engine), listed=optout_stats.listing(engine, limit=1000))

    @admin.get("/forecast")
    def calendar() -> Response:
        try:
            today = now().astimezone(zone).date()
            start = date.fromisoformat(request.args["from"]) if request.args.get("from") else today
            days = int(request.args.get("days") or 30)
        except ValueError:
            start, days = now().astimezone(zone).date(), 0
        if not 1 <= days <= MAX_FORECAST_DAYS:
            return render("forecast.html", 400, title="Forecast", start=start, days=30, max_days=MAX_FORECAST_DAYS,
                          bars=[], big=[], width=calendar_chart.WIDTH, height=calendar_chart.HEIGHT,
                          baseline=calendar_chart.baseline(),
                          error=f"Show 1 to {MAX_FORECAST_DAYS} days from a date like 2026-11-23.")
        with Session(engine) as session:
            rows = forecast(session, settings, start, days, settings.campaigns)
        bars = calendar_chart.bars(rows, start, days)
        return render("forecast.html", title="Forecast", start=start, days=days, max_days=MAX_FORECAST_DAYS,
                      bars=bars, big=[b for b in bars if b.big], width=calendar_chart.WIDTH,
                      height=calendar_chart.HEIGHT, baseline=calendar_chart.baseline())

    def row_page(row_id: int, status: int = 200, *, notice: str = "", error: str = "") -> Response:
        with Session(engine) as session:
            headers, rows = history.listing(session, row_id=row_id)
        if not rows:
            return render("requeue.html", 404, title=f"Row {row_id}", headers=headers, rows=[], ask=False,
                          error=f"There is no send-log row {row_id}.")
        found = dict(zip(headers, rows[0], strict=True))
        ask = found["status"] == SendStatus.UNKNOWN and not notice and not error
        return render("requeue.html", status, title=f"Requeue row {row_id}?" if ask else f"Row {row_id}",
                      headers=headers, rows=[found], ask=ask, csrf=_csrf(secret, row_id), notice=notice,
                      error=error or ("" if ask or notice else f"Row {row_id} is {found['status']}: only "
                                      "unknown rows can be requeued here."))

    @admin.get("/requeue/<int:row_id>")
    def confirm_requeue(row_id: int) -> Response:
        return row_page(row_id)

    @admin.post("/requeue/<int:row_id>")
    def requeue_row(row_id: int) -> Response:
        try:
            check_csrf(secret, _csrf_subject(row_id), request.form.get("csrf"))
        except ForgedForm:
            log.warning("refused a requeue form for row %s without its CSRF value from %s", row_id, request.remote_addr)
            return render("requeue.html", 403, title="Refused", headers=[], rows=[], ask=False,
                          error="This form was not made by the admin view. Nothing was changed.")
        with Session(engine) as session:
            status, reason = session.execute(
                select(col(SendLog.status), col(SendLog.reason)).where(col(SendLog.id) == row_id)
            ).one_or_none() or (None, None)
            if status is None:
                return row_page(row_id)
            if status != SendStatus.UNKNOWN:
                again = (reason or "").startswith(_REQUEUED_BY_HAND)
                return row_page(row_id, 409, error=f"Row {row_id} was already requeued (it is {status} now); "
                                "nothing was changed." if again else "")
            try:
                requeue(session, [row_id], now(), settings.campaigns)
            except StoreError as exc:
                return row_page(row_id, 409, error=str(exc))
        log.info("row %s requeued from the admin view by %s", row_id, request.remote_addr)
        return row_page(row_id, notice=f"Row {row_id} is queued again: the next pass sends it.")

    app.register_blueprint(admin, url_prefix=PREFIX)


def _authorized(given: Any, password: str) -> bool:
    """HTTP Basic with user ``admin`` and the password; both compared in constant time."""
    if given is None or given.type != "basic":
        return False
    user_ok = hmac.compare_digest((given.username or "").encode(), USER.encode())
    password_ok = hmac.compare_digest((given.password or "").encode(), password.encode())
    return user_ok and password_ok


def _csrf_subject(row_id: int) -> str:
    return f"admin-requeue:{row_id}"


def _csrf(secret: str, row_id: int) -> str:
    """The CSRF value of the requeue form of one row (mailer/web/preferences.py's HMAC, bound to the row)."""
    return csrf_value(secret, _csrf_subject(row_id))


def _day_start(text: str, zone: ZoneInfo, plus_days: int = 0) -> datetime | None:
    """The start of a local calendar day in UTC (the store's time), or None for an empty field."""
    if not text:
        return None
    day = date.fromisoformat(text) + timedelta(days=plus_days)
    return datetime.combine(day, time(), zone).astimezone(UTC)


def _find_customer(session: Session, text: str) -> str | None:
    """The external id of the customer with this external id, else of one with this email (case-blind)."""
    found = session.execute(
        select(col(Customer.external_id))
        .where(or_(col(Customer.external_id) == text, func.lower(col(Customer.email)) == text.lower()))
        .order_by((col(Customer.external_id) == text).desc(), col(Customer.id))
        .limit(1)
    ).scalar_one_or_none()
    return found


def _wishes(engine: Engine, who: Customer) -> list[str]:
    """Why this customer gets less mail, in words: unsubscribed, suppressed, paused, opted out of campaigns."""
    lines = []
    if who.unsubscribed_at is not None:
        source = who.unsubscribe_source or "unknown"
        lines.append(f"unsubscribed {who.unsubscribed_at:%Y-%m-%d %H:%M} (source: {source})")
    if who.suppressed_at is not None:
        reason = who.suppressed_reason or ""
        lines.append(f"suppressed {who.suppressed_at:%Y-%m-%d %H:%M} (source: "
                     f"{optout_stats.suppression_source(reason)}): {reason}")
    assert who.id is not None
    wishes = preferences.preferences_of(engine, who.id)
    if wishes.paused_until is not None:
        lines.append(f"paused until {wishes.paused_until:%Y-%m-%d}")
    lines.extend(f"opted out of {name} (source: {source})" for name, source in sorted(wishes.opted_out.items()))
    return lines
