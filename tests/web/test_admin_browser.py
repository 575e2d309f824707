"""The admin view in headless Chromium, against a real ``mailer serve`` after a pass with every outcome.

Chromium sends the Basic login on every request (DevTools ``Network.setExtraHTTPHeaders``), so the
pages are the ones a support person's browser gets: the send log, a customer's timeline, and the
requeue button's confirmation step. A second press (the same form still open in another tab)
is refused and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mailer.config import Settings
from tests.support.chromium import CHROMIUM
from tests.support.outcomes import pass_with_every_outcome
from tests.support.served import Served
from tests.web.test_admin import ADMIN, ENV, PASSWORD, store_rows, with_admin
from tests.web.test_browser import Browser

pytestmark = pytest.mark.slow


@pytest.fixture
def served(project: Path, settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    pass_with_every_outcome(engine, settings)
    monkeypatch.setenv(ENV, PASSWORD)
    with_admin(project)
    server = Served(project)
    yield server
    assert server.stop() == 0


@pytest.fixture
def browsers(tmp_path: Path) -> Iterator[list[Browser]]:
    """Two logged-in Chromiums: a support person's tab, and a second tab with the same form still open."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs the Debian package `chromium`)")
    opened: list[Browser] = []
    try:
        for name in ("first", "second"):
            browser = Browser(tmp_path / f"chromium-{name}")
            opened.append(browser)
            browser.call("Network.enable")
            browser.call("Network.setExtraHTTPHeaders", headers=ADMIN)
        yield opened
    finally:
        for browser in opened:
            browser.close()


def test_chromium_shows_the_log_and_a_timeline_and_requeues_an_unknown_row_once(
    served: Served, engine: Engine, browsers: list[Browser]
) -> None:
    first, second = browsers
    stored = store_rows(engine)
    [unknown] = [i for i, (status, *_) in stored.items() if status == "unknown"]

    first.open(served.base + "/admin/")
    assert first.text("#heading") == "Send log"
    assert first.text(f"#row-{unknown} .status").strip() == "unknown"
    assert first.text(f"#row-{unknown} .to").strip() == "unknown@example.com"
    assert first.text("#count").startswith(f"{len(stored)} rows")

    first.open(served.base + "/admin/customer/C0002")
    assert first.text("#heading") == "Customer C0002"
    assert "unknown@example.com" in first.text("#who")
    assert first.text(f"#row-{unknown} .status").strip() == "unknown"
    assert "Coming from" in first.text("main")
    assert first.text("#coming th")  # the forecast's table is drawn, with or without occasions

    # Both tabs reach the confirmation step from the log's "Requeue…" link; it changes nothing yet.
    for tab in (first, second):
        tab.open(served.base + "/admin/?status=unknown")
        assert tab.text("a.requeue") == "Requeue…"
        tab.click(f"#row-{unknown} a.requeue")
        assert tab.text("#heading") == f"Requeue row {unknown}?"
        assert tab.text("#confirm") == f"Yes, requeue row {unknown}"
    assert store_rows(engine) == stored

    first.click("#confirm")
    assert first.text("#notice") == f"Row {unknown} is queued again: the next pass sends it."
    assert store_rows(engine)[unknown][:2] == ("queued", "requeued by hand (was unknown)")

    second.click("#confirm")
    assert second.text("#error") == f"Row {unknown} was already requeued (it is queued now); nothing was changed."
    assert store_rows(engine)[unknown][:2] == ("queued", "requeued by hand (was unknown)")
    # The confirmation page no longer offers the button for that row.
    first.open(served.base + f"/admin/requeue/{unknown}")
    assert first.text("#error") == f"Row {unknown} is queued: only unknown rows can be requeued here."
    assert first.call("Runtime.evaluate", expression="document.querySelector('#confirm') === null")["result"]["value"]
    assert {i: r for i, r in store_rows(engine).items() if i != unknown} == {
        i: r for i, r in stored.items() if i != unknown
    }
