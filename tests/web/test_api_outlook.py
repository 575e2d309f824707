"""GET /api/v1/customers/<id> shows the customer's upcoming occasions, from a real `mailer serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from mailer.service import apikeys
from tests.support.served import Served
from tests.web.test_api import call, errors


@pytest.fixture
def served(project: Path) -> Iterator[Served]:
    server = Served(project)
    yield server
    assert server.stop() == 0


@pytest.fixture
def key(engine: Engine) -> str:
    return apikeys.create(engine, "shop")


def upcoming(served: Served, key: str, external_id: str, query: str = "") -> dict[str, Any]:
    reply = call(served, "GET", f"/customers/{external_id}{query}", key)
    assert reply.status == 200, reply.body
    found: dict[str, Any] = json.loads(reply.body)["upcoming"]
    return found


def by_campaign(outlook: dict[str, Any], campaign: str) -> list[dict[str, Any]]:
    return [o for o in outlook["occasions"] if o["campaign"] == campaign]


@pytest.mark.slow
def test_an_anniversary_in_ten_days_is_shown_with_the_plans_verdict(served: Served, key: str) -> None:
    today = datetime.now(UTC).date()
    since = (today + timedelta(days=10)).replace(year=today.year - 2)  # no 29 February: 10 days never lands on it
    body = {"email": "ann@example.com", "first_name": "Ann", "timezone": "UTC", "customer_since": since.isoformat()}
    assert call(served, "PUT", "/customers/ann-1", key, body).status == 201

    outlook = upcoming(served, key, "ann-1")
    assert outlook["days"] == 30
    due = since.replace(year=since.year + 2)
    [anniversary] = by_campaign(outlook, "customer-anniversary")
    assert (anniversary["kind"], anniversary["due_date"], anniversary["verdict"]) == (
        "anniversary", due.isoformat(), "send")
    assert anniversary["occasion"].startswith("anniversary:")

    # A shorter look ahead ends before it; a bad one is refused with the field named.
    assert by_campaign(upcoming(served, key, "ann-1", "?days=5"), "customer-anniversary") == []
    for bad in ("0", "367", "soon"):
        refused = call(served, "GET", f"/customers/ann-1?days={bad}", key)
        assert refused.status == 422
        assert errors(refused)[0]["field"] == "days"


@pytest.mark.slow
def test_an_order_posted_to_the_api_moves_the_we_miss_you_step_out(served: Served, key: str) -> None:
    now = datetime.now(UTC)
    since = date(now.year - 3, 1, 15)
    body = {"email": "bo@example.com", "timezone": "UTC", "customer_since": since.isoformat()}
    assert call(served, "PUT", "/customers/bo-1", key, body).status == 201
    old = {"external_id": "bo-1", "kind": "order", "occurred_at": (now - timedelta(days=50)).isoformat(),
           "amount": "20.00", "reference": "o-old"}
    assert call(served, "POST", "/interactions", key, old).status == 200

    spell_start = (now - timedelta(days=50)).date()
    [step] = by_campaign(upcoming(served, key, "bo-1"), "we-miss-you")
    assert (step["kind"], step["occasion"], step["due_date"], step["verdict"]) == (
        "silence", f"silence:{spell_start.isoformat()}:60", (spell_start + timedelta(days=60)).isoformat(), "send")

    new = {"external_id": "bo-1", "kind": "order", "occurred_at": now.isoformat(), "amount": "15.00",
           "reference": "o-new"}
    assert call(served, "POST", "/interactions", key, new).status == 200
    assert by_campaign(upcoming(served, key, "bo-1"), "we-miss-you") == []
    # The new spell's first step, 60 days after the order, is where the step went.
    later = by_campaign(upcoming(served, key, "bo-1", "?days=90"), "we-miss-you")
    assert [o["occasion"] for o in later] == [f"silence:{now.date().isoformat()}:60"]
