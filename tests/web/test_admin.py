"""The admin view on a real `mailer serve` process, after a pass that left sent, deferred, failed and unknown rows."""

from __future__ import annotations

import base64
import html
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.config import Settings
from mailer.contacts import optout
from mailer.planning.forecast import ForecastRow
from mailer.store.tables import Customer, SendLog
from mailer.web import calendar_chart
from tests.support.factories import add_customer
from tests.support.outcomes import pass_with_every_outcome
from tests.support.served import Reply, Served

PASSWORD = "correct horse battery staple"
ENV = "MAILER_TEST_ADMIN_PASSWORD"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = basic("admin", PASSWORD)


def with_admin(config: Path) -> None:
    config.write_text(config.read_text(encoding="utf-8") + f'\n[admin]\npassword_env = "{ENV}"\n', encoding="utf-8")


def rows_of(page: str) -> dict[int, dict[str, str]]:
    """The send-log table of a page: row id → {column class: cell text}."""
    found = {}
    for row_id, body in re.findall(r'<tr id="row-(\d+)" class="row">(.*?)</tr>', page, re.S):
        cells = re.findall(r'<td class="(\w+)[^"]*">(.*?)</td>', body, re.S)
        found[int(row_id)] = {name: html.unescape(re.sub(r"<[^>]+>", "", text)).strip() for name, text in cells}
    return found


def get(served: Served, path: str, **query: str) -> Reply:
    """GET with the admin password (Served.request quotes a "?", so the query goes through urllib here)."""
    url = served.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
    request = urllib.request.Request(url, headers=ADMIN)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, response.read().decode(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.read().decode(), dict(exc.headers))


def csrf_of(page: str) -> str:
    [value] = re.findall(r'name="csrf" value="([^"]+)"', page)
    return value


def post(served: Served, path: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> Reply:
    body = urllib.parse.urlencode(fields).encode()
    return served.request("POST", path, body, "application/x-www-form-urlencoded", headers=ADMIN | (headers or {}))


def store_rows(engine: Engine) -> dict[int, tuple[str, str, str]]:
    with Session(engine) as session:
        found = session.execute(
            select(SendLog.id, SendLog.status, SendLog.reason, Customer.email)
            .join(Customer, Customer.id == SendLog.customer_id)  # type: ignore[arg-type]
        ).all()
    return {row_id: (status, reason or "", email) for row_id, status, reason, email in found}


@pytest.fixture
def served(project: Path, settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    pass_with_every_outcome(engine, settings)
    optout.suppress_address(engine, "late@example.com", "complaint via webhook:ses: abuse")
    monkeypatch.setenv(ENV, PASSWORD)
    with_admin(project)
    server = Served(project)
    yield server
    assert server.stop() == 0


@pytest.mark.slow
def test_without_an_admin_password_there_is_no_admin_view(project: Path) -> None:
    server = Served(project)
    try:
        assert server.request("GET", "/admin/", headers=ADMIN).status == 404
        assert server.request("GET", "/admin/forecast", headers=ADMIN).status == 404
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_every_admin_page_refuses_a_visitor_without_the_password(served: Served, engine: Engine) -> None:
    [unknown] = [i for i, (status, *_) in store_rows(engine).items() if status == "unknown"]
    pages = ("/admin/", "/admin/suppressions", "/admin/forecast", "/admin/customer/LATE", f"/admin/requeue/{unknown}")
    for path in pages:
        for headers in ({}, basic("admin", "wrong"), basic("root", PASSWORD), {"Authorization": "Bearer " + PASSWORD}):
            reply = served.request("GET", path, headers=headers)
            assert reply.status == 401, (path, headers)
            challenge = {k.lower(): v for k, v in reply.headers.items()}["www-authenticate"]
            assert challenge.startswith("Basic ")
            assert "unknown@example.com" not in reply.body
    refused = served.request("POST", f"/admin/requeue/{unknown}", b"csrf=x", "application/x-www-form-urlencoded")
    assert refused.status == 401
    assert store_rows(engine)[unknown][0] == "unknown"


@pytest.mark.slow
def test_the_send_log_lists_every_row_with_its_reason_and_filters(served: Served, engine: Engine) -> None:
    stored = store_rows(engine)
    assert {status for status, *_ in stored.values()} >= {"sent", "deferred", "failed", "unknown"}
    page = served.request("GET", "/admin/", headers=ADMIN)
    assert page.status == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    listed = rows_of(page.body)
    assert {i: (r["status"], r["reason"], r["to"]) for i, r in listed.items()} == stored

    [unknown] = [i for i, (status, *_) in stored.items() if status == "unknown"]
    by_status = rows_of(get(served, "/admin/", status="unknown").body)
    assert list(by_status) == [unknown]
    assert f'href="/admin/requeue/{unknown}"' in get(served, "/admin/", status="unknown").body
    by_email = rows_of(get(served, "/admin/", customer="FAILED@example.com").body)
    assert [r["to"] for r in by_email.values()] == ["failed@example.com"]
    assert "451 4.3.0 busy" in next(iter(by_email.values()))["reason"]
    by_id = rows_of(get(served, "/admin/", customer="LATE").body)
    assert [r["status"] for r in by_id.values()] == ["deferred"]
    campaign = next(iter(listed.values()))["campaign"]
    by_campaign = rows_of(get(served, "/admin/", campaign=campaign).body)
    assert set(by_campaign) == {i for i, r in listed.items() if r["campaign"] == campaign}
    assert rows_of(get(served, "/admin/", **{"from": "2000-01-01"}).body) == listed
    assert rows_of(get(served, "/admin/", to="2000-01-01").body) == {}

    nobody = get(served, "/admin/", customer="<script>")
    assert "No customer has the external id or email" in nobody.body and "&lt;script&gt;" in nobody.body
    assert "<script>" not in nobody.body
    assert get(served, "/admin/", **{"from": "23.11.2026"}).status == 400


@pytest.mark.slow
def test_a_customer_timeline_shows_their_rows_and_why_they_get_less_mail(served: Served, engine: Engine) -> None:
    page = served.request("GET", "/admin/customer/LATE", headers=ADMIN)
    assert page.status == 200
    [row] = rows_of(page.body).values()
    assert row["status"] == "deferred" and row["reason"]
    assert "suppressed" in page.body and "(source: webhook:ses)" in page.body
    assert served.request("GET", "/admin/customer/NOBODY", headers=ADMIN).status == 404

    listed = served.request("GET", "/admin/suppressions", headers=ADMIN)
    assert listed.status == 200
    assert re.search(r"LATE</a></td>\s*<td>late@example.com</td><td>suppressed</td>", listed.body)
    assert "<td>webhook:ses</td>" in listed.body


def coming_of(page: str) -> list[tuple[str, ...]]:
    """The "coming" table of a customer page: (due, campaign, verdict, reason) per row."""
    rows = re.findall(r'<tr class="coming[^"]*">(.*?)</tr>', page, re.S)
    return [tuple(html.unescape(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)) for row in rows]


@pytest.mark.slow
def test_a_customer_timeline_shows_what_is_coming_from_the_forecast(served: Served, engine: Engine) -> None:
    # Emailed on the 26th: the frequency cap holds the anniversary of the 30th until 3 December.
    add_customer(engine, "ANN", since=date(2019, 11, 30), birthday=date(1990, 12, 10),
                 last_emailed_at=datetime(2026, 11, 26, 12, tzinfo=UTC))
    page = get(served, "/admin/customer/ANN", **{"from": "2026-11-23"})
    assert page.status == 200
    assert "Coming from 2026-11-23 (30 days)" in page.body
    assert coming_of(page.body) == [
        ("2026-11-30", "customer-anniversary", "send",
         "sent on 2026-12-03 after deferral (frequency cap: last email 2026-11-26)"),
        ("2026-12-10", "birthday", "send", "sent on 2026-12-10"),
    ]
    # The unknown row is in flight: nothing more is coming for that customer in its anniversary's days.
    assert coming_of(get(served, "/admin/customer/C0002", **{"from": "2026-11-23"}).body) == []
    assert 'id="nothing-coming"' in get(served, "/admin/customer/C0002", **{"from": "2026-11-23"}).body
    assert "Coming from " in get(served, "/admin/customer/ANN").body, "without ?from= it starts today"
    assert get(served, "/admin/customer/ANN", **{"from": "30.11.2026"}).status == 400


@pytest.mark.slow
def test_the_forecast_calendar_is_an_svg_bar_per_day(served: Served) -> None:
    page = get(served, "/admin/forecast", days="14", **{"from": "2026-11-23"})
    assert page.status == 200
    assert page.body.count('<g class="day') == 14
    assert 'data-day="2026-11-23"' in page.body and 'data-day="2026-12-06"' in page.body
    assert get(served, "/admin/forecast", days="1000").status == 400


def test_a_day_of_4000_anniversaries_stands_out_in_the_chart() -> None:
    start = date(2026, 11, 23)
    rows = [ForecastRow(date(2026, 11, 23 + i), "anniversary", 12 + i, 0, 0) for i in range(7)]
    rows.append(ForecastRow(date(2026, 11, 26), "birthday", 4000, 3, 1))
    bars = calendar_chart.bars(rows, start, 10)
    assert [b.day for b in bars if b.big] == [date(2026, 11, 26)]
    tallest = max(bars, key=lambda b: b.height)
    assert tallest.day == date(2026, 11, 26) and tallest.y == pytest.approx(24)
    assert [b.send for b in bars[7:]] == [0, 0, 0] and all(b.height == 0 for b in bars[7:])
    assert not any(b.big for b in calendar_chart.bars(rows[:7], start, 10)), "an ordinary week has no big day"


@pytest.mark.slow
def test_requeue_needs_the_confirm_forms_csrf_and_works_once(served: Served, engine: Engine) -> None:
    stored = store_rows(engine)
    [unknown] = [i for i, (status, *_) in stored.items() if status == "unknown"]
    [failed] = [i for i, (status, *_) in stored.items() if status == "failed"]
    path = f"/admin/requeue/{unknown}"

    confirm = served.request("GET", path, headers=ADMIN)
    assert confirm.status == 200
    assert f"Yes, requeue row {unknown}" in confirm.body
    token = csrf_of(confirm.body)
    assert store_rows(engine) == stored, "the confirmation page changes nothing"

    for forged in ({}, {"csrf": ""}, {"csrf": token[:-1] + ("A" if token[-1] != "A" else "B")}):
        reply = post(served, path, forged)
        assert reply.status == 403, forged
        assert "Nothing was changed" in reply.body
    # The value of one row's form does not requeue another.
    assert post(served, f"/admin/requeue/{failed}", {"csrf": token}).status == 403
    assert store_rows(engine) == stored

    done = post(served, path, {"csrf": token})
    assert done.status == 200
    assert f"Row {unknown} is queued again" in done.body
    status, reason, _ = store_rows(engine)[unknown]
    assert (status, reason) == ("queued", "requeued by hand (was unknown)")

    again = post(served, path, {"csrf": token})
    assert again.status == 409
    assert f"Row {unknown} was already requeued" in again.body
    assert store_rows(engine)[unknown][:2] == ("queued", "requeued by hand (was unknown)")
    assert "Yes, requeue" not in served.request("GET", path, headers=ADMIN).body
