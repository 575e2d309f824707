"""`mailer serve` at the address the messages carry: the path of `[sender] unsubscribe_url`, and behind proxies.

A real pass writes real messages (maildir transport); the URL in their `List-Unsubscribe` header is
POSTed, path verbatim, to a real `mailer serve` process on loopback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session

from mailer import store
from mailer.cli import cli
from mailer.compose.tokens import read_link
from mailer.config import load_settings
from mailer.service.project import init_project
from mailer.store.tables import Customer
from tests.support.served import Reply, Served

pytestmark = pytest.mark.slow

DAY = date(2026, 11, 23)
FORM = "application/x-www-form-urlencoded"
FORWARDED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "northwind.example",
    "X-Forwarded-Prefix": "/mailer",
}


@dataclass
class Sent:
    config: Path
    engine: Engine
    secret: str
    links: list[str]  # the https URL of each message's List-Unsubscribe header, in file-name order


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sent]:
    """The demo project after one real pass on its sample day, written as .eml files."""
    config = init_project(tmp_path_factory.mktemp("address") / "proj", DAY, customers=60)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    runner = CliRunner()
    csv = config.parent / "data" / "customers.csv"
    imported = runner.invoke(cli, ["--config", str(config), "import", "customers", str(csv)])
    assert imported.exit_code == 0, imported.output
    passed = runner.invoke(cli, ["--config", str(config), "run", "--date", DAY.isoformat()])
    assert passed.exit_code == 0, passed.output
    links = []
    for path in sorted((settings.transport.path / "new").glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        [link] = re.findall(r"<(https://[^>]+)>", str(message["List-Unsubscribe"]))
        links.append(link)
    assert len(links) >= 3, "the sample day sends a few messages"
    yield Sent(config, engine, settings.sender.secret.reveal(), links)
    engine.dispose()


def with_web(config: Path, trusted_proxies: int | None) -> Path:
    """A copy of ``config`` (same store, same secret) with ``[web] trusted_proxies`` set, or left out."""
    copy = config.with_name(f"mailer-{trusted_proxies}.toml")
    text = config.read_text(encoding="utf-8")
    if trusted_proxies is not None:
        text += f"\n[web]\ntrusted_proxies = {trusted_proxies}\n"
    copy.write_text(text, encoding="utf-8")
    return copy


@pytest.fixture(scope="module")
def direct(sent: Sent) -> Iterator[Served]:
    """`mailer serve` with the default [web]: no proxy trusted."""
    served = Served(with_web(sent.config, None))
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def proxied(sent: Sent) -> Iterator[Served]:
    """`mailer serve` with `[web] trusted_proxies = 1`."""
    served = Served(with_web(sent.config, 1))
    yield served
    assert served.stop() == 0


def customer_of(sent: Sent, link: str) -> Customer:
    token = link.rsplit("/", 1)[1]
    with Session(sent.engine) as session:
        found = session.get(Customer, read_link(sent.secret, token).customer_id)
        assert found is not None
        return found


def actions(body: str) -> set[str]:
    """Where the page's forms post to (every form of the preference page posts back to its link)."""
    return set(re.findall(r'<form method="post" action="([^"]+)"', body))


def press(server: Served, path: str, button: str, headers: dict[str, str] | None = None) -> Reply:
    """A button of the page at ``path``, with the CSRF value the page carries."""
    page = server.request("GET", path, headers=headers)
    [csrf] = set(re.findall(r'name="csrf" value="([^"]+)"', page.body))
    body = urlencode({"csrf": csrf, "do": button}).encode()
    return server.request("POST", path, body, FORM, headers=headers)


def test_a_one_click_post_to_the_exact_url_in_a_sent_message_unsubscribes(sent: Sent, direct: Served) -> None:
    link = sent.links[0]
    assert link.startswith("https://northwind.example/mailer/u/")
    path = urlsplit(link).path
    assert customer_of(sent, link).unsubscribed_at is None

    reply = direct.request("POST", path, b"List-Unsubscribe=One-Click", FORM)

    assert reply.status == 200, reply.body
    after = customer_of(sent, link)
    assert after.unsubscribed_at is not None and after.unsubscribe_source == "one-click"


def test_the_bare_path_of_links_already_sent_still_unsubscribes(sent: Sent, direct: Served) -> None:
    link = sent.links[1]
    bare = "/u/" + link.rsplit("/", 1)[1]
    assert direct.request("GET", "/healthz").status == 200
    assert direct.request("GET", "/mailer/healthz").status == 200

    reply = direct.request("POST", bare, b"List-Unsubscribe=One-Click", FORM)

    assert reply.status == 200, reply.body
    assert customer_of(sent, link).unsubscribe_source == "one-click"


def test_the_pages_forms_post_back_under_the_prefix_the_request_came_in_on(sent: Sent, direct: Served) -> None:
    token = sent.links[2].rsplit("/", 1)[1]
    for prefix in ("/mailer", ""):
        assert actions(direct.request("GET", f"{prefix}/u/{token}").body) == {f"{prefix}/u/{token}"}

    done = press(direct, f"/mailer/u/{token}", "unsubscribe")
    assert done.status == 200 and "You are unsubscribed" in done.body
    assert actions(done.body) == {f"/mailer/u/{token}"}
    again = press(direct, f"/mailer/u/{token}", "resubscribe")
    assert again.status == 200 and "You are subscribed again" in again.body
    assert actions(again.body) == {f"/mailer/u/{token}"}
    assert customer_of(sent, sent.links[2]).unsubscribed_at is None


def test_a_trusted_proxys_forwarded_prefix_scheme_and_host_make_the_links(sent: Sent, proxied: Served) -> None:
    # The proxy strips /mailer and says so in X-Forwarded-Prefix: the links must put it back.
    token = sent.links[2].rsplit("/", 1)[1]
    page = proxied.request("GET", f"/u/{token}", headers=FORWARDED)
    assert actions(page.body) == {f"https://northwind.example/mailer/u/{token}"}

    done = press(proxied, f"/u/{token}", "unsubscribe", FORWARDED)
    assert done.status == 200 and actions(done.body) == {f"https://northwind.example/mailer/u/{token}"}
    back = press(proxied, f"/u/{token}", "resubscribe", FORWARDED)
    assert back.status == 200 and "You are subscribed again" in back.body


def test_forwarded_headers_are_ignored_when_no_proxy_is_trusted(sent: Sent, direct: Served) -> None:
    token = sent.links[2].rsplit("/", 1)[1]
    page = direct.request("GET", f"/u/{token}", headers=FORWARDED)
    assert page.status == 200
    assert actions(page.body) == {f"/u/{token}"}
    # (The footer's https://northwind.example is the company's website from the config, not a link built here.)
    assert "northwind.example/mailer" not in page.body and 'action="https:' not in page.body
