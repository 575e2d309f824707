"""The HTTP API under ``/api/v1/`` of ``mailer serve``: a shop or CRM feeds the store as things happen.

    PUT  /api/v1/customers/<external_id>   create or update one customer (a JSON object of the
                                           CSV import's fields; custom keys become attributes)
                                           201 created, 200 updated or unchanged
    POST /api/v1/interactions              one interaction object or an array of them; a
                                           ``reference`` already present for the customer is
                                           not added again (200, counted unchanged)
    GET  /api/v1/customers/<external_id>   what mailer holds: fields, opt-outs, the last send-log rows,
                                           and ``upcoming``: the occasions the passes of the next
                                           ``?days=`` days (default 30, 1 to 366) would decide, and how
    DELETE /api/v1/customers/<external_id> erasure, as ``mailer forget`` (mailer/contacts/erasure.py)

Every call needs ``Authorization: Bearer <key>`` (``mailer api-key create NAME``): 401 without
one or with a key mailer does not know, 403 with a revoked one. A body over 1 MiB is refused
(413), one that is not JSON 400, a field the import rules refuse 422 with every problem named:
``{"errors": [{"field": "email", "problem": "..."}]}`` (with ``"item": N``, counted from 1, for
an array). A refused call changes nothing. Answers are JSON, errors too. The OpenAPI document is
at /api/v1/openapi.json (no key needed: it holds no data).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, g, request
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col
from werkzeug.exceptions import HTTPException

from mailer.config import Settings
from mailer.contacts import apirows, erasure, preferences
from mailer.contacts.csvfile import ImportFailed, RowError
from mailer.contacts.fields import RowProblem
from mailer.planning import outlook
from mailer.service import apikeys
from mailer.store.tables import Customer, SendLog, utcnow
from mailer.web import openapi

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_BODY = 1024 * 1024  # a customer is a few hundred bytes; a day's orders in one call fit easily
SEND_LOG_ROWS = 20  # the newest rows a GET shows
OUTLOOK_DAYS = 30  # a GET's default look ahead: the next month's occasions


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, default=_plain, ensure_ascii=False, indent=1)
    return Response(body + "\n", status=status, mimetype="application/json", headers=headers)


def _plain(value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _errors(status: int, *errors: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"errors": list(errors)}, headers)


def _row_errors(failed: ImportFailed, *, numbered: bool) -> Response:
    def one(error: RowError) -> dict[str, Any]:
        entry: dict[str, Any] = {"field": error.column, "problem": error.problem}
        if numbered:
            entry["item"] = error.line
        return entry

    return _errors(422, *(one(e) for e in failed.errors))


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _body() -> Any:
    """The request's JSON (numbers with a fraction as Decimal, so an amount is not rounded through a float)."""
    request.max_content_length = MAX_BODY  # the app's own limit is sized for a one-click POST
    if request.mimetype != "application/json":
        raise _Refused(_errors(415, {"field": "body", "problem": "send JSON with Content-Type: application/json"}))
    data = request.get_data(cache=False)
    try:
        return json.loads(data, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Refused(_errors(400, {"field": "body", "problem": f"not valid JSON: {exc}"})) from None


def register(app: Flask, settings: Settings, engine: Engine, *, now: Callable[[], datetime] = utcnow) -> None:
    """Add the API's routes under /api/v1 to ``app``."""
    api = Blueprint("api_v1", __name__)
    zone = settings.sender.timezone
    date_columns = settings.date_columns

    @api.before_request
    def authenticate() -> Response | None:
        if request.endpoint == "api_v1.openapi_document":
            return None  # the description of the API holds no data
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        verdict, name = apikeys.check(engine, key.strip() if scheme.lower() == "bearer" else None, now())
        if verdict is apikeys.Verdict.UNKNOWN:
            log.info("API call without a known key from %s", request.remote_addr)
            problem = "send a key made with 'mailer api-key create' as 'Authorization: Bearer <key>'"
            return _errors(401, {"field": "Authorization", "problem": problem},
                           headers={"WWW-Authenticate": 'Bearer realm="mailer"'})
        if verdict is apikeys.Verdict.REVOKED:
            log.info("API call with the revoked key %r from %s", name, request.remote_addr)
            return _errors(403, {"field": "Authorization", "problem": f"the API key {name!r} was revoked"})
        g.api_key = name
        return None

    @api.errorhandler(_Refused)
    def refused(exc: _Refused) -> Response:
        return exc.response

    @api.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        field = "body" if code == 413 else "request"
        problem = f"larger than {MAX_BODY // 1024} KiB" if code == 413 else (exc.description or exc.name)
        return _errors(code, {"field": field, "problem": problem})

    @api.errorhandler(IntegrityError)
    def conflict(exc: IntegrityError) -> Response:
        # Two calls creating the same customer at once: the loser changed nothing and may simply repeat.
        log.info("API call lost a race: %s", exc.orig)
        return _errors(409, {"field": "external_id", "problem": "changed by another call at the same time; repeat"})

    @api.errorhandler(SQLAlchemyError)
    def store_down(exc: SQLAlchemyError) -> Response:
        log.error("store error in an API call: %s", exc)
        return _errors(503, {"field": "store", "problem": "the store did not answer; nothing was changed"},
                       headers={"Retry-After": "60"})

    @api.put("/customers/<path:external_id>")
    def put_customer(external_id: str) -> Response:
        body = _body()
        if not isinstance(body, dict):
            return _errors(422, {"field": "body", "problem": "must be a JSON object of the customer's fields"})
        try:
            report = apirows.put_customer(
                engine, external_id, body, default_zone=zone, date_columns=date_columns, now=now()
            )
        except RowProblem as problem:
            return _errors(422, {"field": problem.column, "problem": problem.problem})
        except ImportFailed as failed:
            return _row_errors(failed, numbered=False)
        result = "created" if report.inserted else "updated" if report.updated else "unchanged"
        log.info("API key %r: customer %r %s", g.api_key, external_id, result)
        return _json(201 if report.inserted else 200, {"external_id": external_id, "result": result})

    @api.post("/interactions")
    def post_interactions() -> Response:
        body = _body()
        items = body if isinstance(body, list) else [body]
        if not items:
            return _errors(422, {"field": "body", "problem": "an empty array: send at least one interaction"})
        try:
            report = apirows.post_interactions(engine, items, default_zone=zone, now=now())
        except ImportFailed as failed:
            return _row_errors(failed, numbered=isinstance(body, list))
        log.info("API key %r: %d interactions added, %d already present", g.api_key, report.inserted, report.unchanged)
        return _json(200, {"added": report.inserted, "unchanged": report.unchanged})

    @api.delete("/customers/<path:external_id>")
    def delete_customer(external_id: str) -> Response:
        outcome = erasure.forget(engine, external_id, now())
        if outcome is erasure.Erasure.UNKNOWN:
            return _errors(404, {"field": "external_id", "problem": f"no customer {external_id!r}"})
        log.info("API key %r: customer %r %s", g.api_key, external_id, outcome)
        return _json(200, {"external_id": external_id, "result": str(outcome)})

    @api.get("/customers/<path:external_id>")
    def get_customer(external_id: str) -> Response:
        days = _outlook_days(request.args.get("days"))
        with Session(engine) as session:
            customer = session.execute(
                select(Customer).where(col(Customer.external_id) == external_id)
            ).scalar_one_or_none()
            if customer is None or customer.id is None:
                return _errors(404, {"field": "external_id", "problem": f"no customer {external_id!r}"})
            rows = session.execute(
                select(SendLog).where(col(SendLog.customer_id) == customer.id)
                .order_by(col(SendLog.updated_at).desc(), col(SendLog.id).desc()).limit(SEND_LOG_ROWS)
            ).scalars().all()
            held = _customer_json(customer)
            held["send_log"] = [_send_log_json(r) for r in rows]
            # The customer's own today: the day their next pass stands for.
            start = now().astimezone(ZoneInfo(customer.timezone or zone)).date()
            upcoming = outlook.outlook(session, settings, customer.id, start, days, settings.campaigns)
            held["upcoming"] = {"from": start, "days": days, "occasions": [_upcoming_json(u) for u in upcoming]}
        wishes = preferences.preferences_of(engine, customer.id)
        held["opt_out"]["campaigns"] = wishes.opted_out
        held["opt_out"]["paused_until"] = wishes.paused_until
        return _json(200, held)

    @api.get("/openapi.json")
    def openapi_document() -> Response:
        return _json(200, openapi.document())

    app.register_blueprint(api, url_prefix=PREFIX)


def _customer_json(c: Customer) -> dict[str, Any]:
    return {
        "external_id": c.external_id,
        "email": c.email,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "customer_since": c.customer_since,
        "customer_since_from": c.customer_since_from or "file",
        "birthday": {"year": c.birthday_year, "month": c.birthday_month, "day": c.birthday_day}
        if c.birthday_month else None,
        "timezone": c.timezone,
        "locale": c.locale,
        "tags": c.tags,
        "owner_name": c.owner_name,
        "owner_email": c.owner_email,
        "attributes": c.attributes,
        "order_count": c.order_count,
        "lifetime_spend": c.lifetime_spend,
        "interaction_count": c.interaction_count,
        "last_interaction_at": c.last_interaction_at,
        "last_emailed_at": c.last_emailed_at,
        "opt_out": {
            "unsubscribed_at": c.unsubscribed_at,
            "unsubscribe_source": c.unsubscribe_source,
            "suppressed_at": c.suppressed_at,
            "suppressed_reason": c.suppressed_reason,
        },
        "updated_at": c.updated_at,
    }


def _outlook_days(text: str | None) -> int:
    if text is None:
        return OUTLOOK_DAYS
    if not text.strip().isdigit() or not 1 <= int(text) <= outlook.MAX_DAYS:
        problem = f"a whole number of days from 1 to {outlook.MAX_DAYS}, not {text[:20]!r}"
        raise _Refused(_errors(422, {"field": "days", "problem": problem}))
    return int(text)


def _upcoming_json(u: outlook.Upcoming) -> dict[str, Any]:
    return {
        "campaign": u.campaign,
        "occasion": u.key,
        "kind": u.kind,
        "due_date": u.due,
        "decided_on": u.decided_on,
        "verdict": str(u.verdict),
        "reason": u.reason,
    }


def _send_log_json(row: SendLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "campaign": row.campaign,
        "occasion": row.occasion_key,
        "due_date": row.due_date,
        "status": row.status,
        "reason": row.reason,
        "attempts": row.attempts,
        "subject": row.subject,
        "updated_at": row.updated_at,
    }
