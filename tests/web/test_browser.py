"""A real browser unsubscribes: headless Chromium opens the link from a message the SMTP test server received.

Chromium is driven over the DevTools protocol (websocket-client), so no
driver binary has to match the browser's version.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlmodel import Session

from mailer import store
from mailer.cli import cli
from mailer.config import load_settings
from mailer.contacts import importer
from mailer.service.project import init_project
from mailer.store.tables import Customer, SendLog
from tests.support.chromium import CHROMIUM, HEADLESS_FLAGS
from tests.support.served import Served
from tests.support.smtpserver import SmtpServer

websocket = pytest.importorskip("websocket", reason="websocket-client (the test extra) drives Chromium")

pytestmark = pytest.mark.slow

DAY = date(2026, 11, 23)
CSV = """\
external_id,email,first_name,last_name,customer_since,birthday,timezone,tags,owner_name,owner_email
C1,ann@example.com,Ann,Lee,2019-11-24,--11-23,Europe/London,,,
"""


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *HEADLESS_FLAGS,
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self._wait_for(lambda: (profile / "DevToolsActivePort").read_text().split()[0], "DevTools port")
        targets = self._wait_for(lambda: self._pages(port), "a page target")
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=60)
        self._next = 0
        self.call("Page.enable")

    def _wait_for(self, probe: Any, what: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = probe()
            except (OSError, IndexError, ValueError):
                found = None
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"chromium gave no {what}")

    @staticmethod
    def _pages(port: str) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            return [t for t in json.load(response) if t.get("type") == "page"]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self.ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def wait_for_load(self) -> None:
        while json.loads(self.ws.recv()).get("method") != "Page.loadEventFired":
            pass

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for_load()

    def text(self, selector: str) -> str:
        result = self.call("Runtime.evaluate", expression=f"document.querySelector({selector!r}).textContent")
        return str(result["result"]["value"])

    def click(self, selector: str) -> None:
        self.call("Runtime.evaluate", expression=f"document.querySelector({selector!r}).click()")
        self.wait_for_load()

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs the Debian package `chromium`)")
    chromium = Browser(tmp_path / "chromium-profile")
    yield chromium
    chromium.close()


def point_config_at(config: Path, unsubscribe_url: str, smtp: SmtpServer) -> None:
    text = config.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^unsubscribe_url = .*$", f'unsubscribe_url = "{unsubscribe_url}"', text)
    smtp_lines = f'kind = "smtp"\nhost = "{smtp.host}"\nport = {smtp.port}\nsecurity = "none"'
    text = re.sub(r'(?m)^kind = "maildir".*$', smtp_lines, text)
    text = re.sub(r"(?m)^path = .*$", "", text)
    config.write_text(text, encoding="utf-8")


def test_chromium_unsubscribes_from_the_link_in_a_sent_message_and_the_next_pass_sends_nothing(
    tmp_path: Path, browser: Browser
) -> None:
    config = init_project(tmp_path / "proj", DAY, customers=3)
    engine = store.make_engine(load_settings(config).store.url)
    store.create_schema(engine)
    people = tmp_path / "people.csv"
    people.write_text(CSV, encoding="utf-8")
    importer.import_customers(engine, people)

    served = Served(config)
    try:
        with SmtpServer() as smtp:
            point_config_at(config, served.base, smtp)
            result = CliRunner().invoke(cli, ["--config", str(config), "run", "--date", DAY.isoformat()])
            assert result.exit_code == 0, result.output
            smtp.wait_for(1)
            [message] = smtp.messages
            text = message.parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr]
            [link] = re.findall(rf"{re.escape(served.base)}/u/\S+", text)

            browser.open(link)
            assert browser.text("#heading") == "Your emails from Northwind Coffee Roasters"
            assert "a•••@example.com" in browser.text("main")
            with Session(engine) as session:
                assert session.execute(select(Customer.unsubscribed_at)).scalar_one() is None
            browser.click("#confirm")
            assert browser.text("#heading") == "You are unsubscribed"

            with Session(engine) as session:
                at, source = session.execute(select(Customer.unsubscribed_at, Customer.unsubscribe_source)).one()
            assert at is not None and source == "page"

            # The next day is Ann's anniversary: the pass must skip it and send nothing.
            result = CliRunner().invoke(cli, ["--config", str(config), "run", "--date", "2026-11-24"])
            assert result.exit_code == 0, result.output
            with Session(engine) as session:
                rows = session.execute(select(SendLog.occasion_key, SendLog.status, SendLog.reason)).all()
            assert sorted(tuple(r) for r in rows) == [
                ("anniversary:2026", "skipped", "unsubscribed"),
                ("birthday:2026", "sent", "delivered"),
            ]
            assert smtp.count == 1
    finally:
        served.stop()
        engine.dispose()
