"""The unsubscribe endpoint over real HTTP: `mailer serve` (waitress) on loopback, real SQLite."""

from __future__ import annotations

import http.client
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import store
from mailer.compose.tokens import RESUBSCRIBE, UNSUBSCRIBE, make_token
from mailer.config import Settings, load_settings
from mailer.contacts import importer
from mailer.service.project import init_project
from mailer.store.tables import Customer
from tests.support.served import Reply, Served

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Settings, Engine]]:
    config = init_project(tmp_path_factory.mktemp("web") / "proj", date(2026, 11, 23), customers=40)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    importer.import_customers(engine, config.parent / "data" / "customers.csv")
    served = Served(config)
    yield served, settings, engine
    assert served.stop() == 0, "SIGTERM should stop the server cleanly"
    engine.dispose()


@pytest.fixture
def server(site: tuple[Served, Settings, Engine]) -> Served:
    return site[0]


@pytest.fixture
def secret(site: tuple[Served, Settings, Engine]) -> str:
    return site[1].sender.secret.reveal()


@pytest.fixture
def engine(site: tuple[Served, Settings, Engine]) -> Engine:
    return site[2]


_ids = iter(range(1, 41))


@pytest.fixture
def customer(engine: Engine) -> Customer:
    """A customer no other test in this module has touched."""
    with Session(engine) as session:
        found = session.get(Customer, next(_ids))
        assert found is not None and found.unsubscribed_at is None
        return found


def reload(engine: Engine, customer_id: int) -> Customer:
    with Session(engine) as session:
        found = session.get(Customer, customer_id)
        assert found is not None
        return found


def everyone(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        rows = session.execute(
            select(
                Customer.id,
                Customer.unsubscribed_at,
                Customer.unsubscribe_source,
                Customer.suppressed_at,
            ).order_by(Customer.id)
        ).all()
    return [tuple(r) for r in rows]


def test_one_click_post_unsubscribes_at_once_with_no_page(
    server: Served, secret: str, engine: Engine, customer: Customer
) -> None:
    before = datetime.now(UTC)
    reply = server.one_click(make_token(secret, customer.id or 0))
    assert reply.status == 200
    assert "<html" not in reply.body.lower()
    after = reload(engine, customer.id or 0)
    assert after.unsubscribe_source == "one-click"
    assert after.unsubscribed_at is not None and before - timedelta(
        seconds=5
    ) <= after.unsubscribed_at <= datetime.now(UTC)


def test_one_click_accepts_multipart_and_untyped_bodies(
    server: Served, secret: str, engine: Engine
) -> None:
    first, second = next(_ids), next(_ids)
    boundary = "xYzZY"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n'
        "\r\nOne-Click\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    reply = server.request(
        "POST", f"/u/{make_token(secret, first)}", body, f"multipart/form-data; boundary={boundary}"
    )
    assert reply.status == 200
    assert reload(engine, first).unsubscribe_source == "one-click"

    host, port = server.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(
        "POST", f"/u/{make_token(secret, second)}", body=b"List-Unsubscribe=One-Click"
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200
    assert reload(engine, second).unsubscribe_source == "one-click"


def press(server: Served, token: str, button: str, **fields: str) -> Reply:
    """Press a button of the preference page the way a browser does: with the page's CSRF value."""
    page = server.request("GET", f"/u/{token}")
    [csrf] = set(re.findall(r'name="csrf" value="([^"]+)"', page.body))
    body = urllib.parse.urlencode({"csrf": csrf, "do": button, **fields}).encode()
    return server.request("POST", f"/u/{token}", body, "application/x-www-form-urlencoded")


def test_get_shows_the_masked_address_and_changes_nothing(
    server: Served, secret: str, engine: Engine, customer: Customer
) -> None:
    state = everyone(engine)
    reply = server.request("GET", f"/u/{make_token(secret, customer.id or 0)}")
    assert reply.status == 200
    assert customer.email not in reply.body
    local, _, domain = customer.email.partition("@")
    assert f"{local[:2]}•••@{domain}" in reply.body
    forms = re.findall(r"<form[^>]*>", reply.body)
    assert forms and all('method="post"' in form for form in forms)
    assert reply.body.count('name="csrf"') == len(forms), "every form carries the CSRF value"
    assert reply.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
    assert everyone(engine) == state, "a GET (a link scanner, a preview) must not unsubscribe"


def test_the_pages_button_unsubscribes_and_offers_an_undo(
    server: Served, secret: str, engine: Engine, customer: Customer
) -> None:
    token = make_token(secret, customer.id or 0)
    reply = press(server, token, "unsubscribe")
    assert reply.status == 200
    assert "You are unsubscribed" in reply.body
    after = reload(engine, customer.id or 0)
    assert after.unsubscribed_at is not None and after.unsubscribe_source == "page"

    assert 'value="resubscribe"' in reply.body
    assert press(server, token, "resubscribe").status == 200
    back = reload(engine, customer.id or 0)
    assert back.unsubscribed_at is None and back.unsubscribe_source is None


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda good, cid: f"{cid + 1}.{good.split('.')[1]}", id="another-customers-id"
        ),
        pytest.param(lambda good, cid: good[:-1], id="truncated"),
        pytest.param(
            lambda good, cid: good[:-1] + ("A" if good[-1] != "A" else "B"), id="one-char-changed"
        ),
        pytest.param(lambda good, cid: f"{cid}.", id="no-signature"),
        pytest.param(lambda good, cid: str(cid), id="no-dot"),
        pytest.param(lambda good, cid: f"{cid}.{'A' * 32}", id="made-up-signature"),
        pytest.param(lambda good, cid: good + "A", id="too-long"),
        pytest.param(
            lambda good, cid: "\N{SUPERSCRIPT TWO}." + good.split(".")[1], id="non-ascii-digit"
        ),
        pytest.param(lambda good, cid: f"-{good}", id="negative-id"),
        pytest.param(lambda good, cid: make_token("another secret", cid), id="other-secret"),
        pytest.param(lambda good, cid: "9" * 40 + "." + good.split(".")[1], id="huge-id"),
    ],
)
def test_a_forged_or_damaged_token_gets_a_400_page_and_changes_nothing(
    server: Served, secret: str, engine: Engine, forge: Any
) -> None:
    cid = 3
    token = forge(make_token(secret, cid), cid)
    state = everyone(engine)
    for method, body in (("POST", b"List-Unsubscribe=One-Click"), ("GET", None)):
        reply = server.request(
            method, f"/u/{token}", body, "application/x-www-form-urlencoded" if body else None
        )
        assert reply.status == 400, (method, token)
        assert "This link is not valid" in reply.body
        assert "Traceback" not in reply.body
    assert everyone(engine) == state


def test_a_token_for_another_purpose_is_refused(
    server: Served, secret: str, engine: Engine, customer: Customer
) -> None:
    cid = customer.id or 0
    state = everyone(engine)
    undo = make_token(secret, cid, RESUBSCRIBE, issued=datetime.now(UTC))
    assert server.one_click(undo).status == 400
    assert server.one_click(make_token(secret, cid, "preview")).status == 400
    assert everyone(engine) == state

    server.one_click(make_token(secret, cid))
    unsubscribed = everyone(engine)
    reply = server.request(
        "POST",
        f"/r/{make_token(secret, cid, UNSUBSCRIBE)}",
        b"",
        "application/x-www-form-urlencoded",
    )
    assert reply.status == 400
    assert everyone(engine) == unsubscribed


def test_an_expired_undo_link_is_refused(
    server: Served, secret: str, engine: Engine, customer: Customer
) -> None:
    cid = customer.id or 0
    server.one_click(make_token(secret, cid))
    stale = make_token(secret, cid, RESUBSCRIBE, issued=datetime.now(UTC) - timedelta(days=31))
    reply = server.request("POST", f"/r/{stale}", b"", "application/x-www-form-urlencoded")
    assert reply.status == 400
    assert reload(engine, cid).unsubscribed_at is not None


def test_unsubscribing_twice_is_harmless_and_keeps_the_first_record(
    server: Served, secret: str, engine: Engine, customer: Customer
) -> None:
    token = make_token(secret, customer.id or 0)
    assert server.one_click(token).status == 200
    first = reload(engine, customer.id or 0)
    assert server.one_click(token).status == 200
    page = press(server, token, "unsubscribe")
    assert page.status == 200 and "already unsubscribed" in page.body
    assert server.request("GET", f"/u/{token}").status == 200
    again = reload(engine, customer.id or 0)
    assert (again.unsubscribed_at, again.unsubscribe_source) == (first.unsubscribed_at, "one-click")


def test_a_valid_token_for_an_unknown_customer_gets_404_and_changes_nothing(
    server: Served, secret: str, engine: Engine
) -> None:
    state = everyone(engine)
    token = make_token(secret, 987654)
    assert server.one_click(token).status == 404
    assert server.request("GET", f"/u/{token}").status == 404
    undo = make_token(secret, 987654, RESUBSCRIBE, issued=datetime.now(UTC))
    assert (
        server.request("POST", f"/r/{undo}", b"", "application/x-www-form-urlencoded").status == 404
    )
    assert everyone(engine) == state


def test_healthz_answers_while_the_store_does(server: Served) -> None:
    reply = server.request("GET", "/healthz")
    assert (reply.status, reply.body) == (200, "ok\n")


def test_other_paths_and_methods_get_plain_error_pages(server: Served, secret: str) -> None:
    assert server.request("GET", "/").status == 404
    assert server.request("DELETE", f"/u/{make_token(secret, 1)}").status == 405
    big = server.request(
        "POST", f"/u/{make_token(secret, 1)}", b"x" * 100_000, "application/x-www-form-urlencoded"
    )
    assert big.status == 413


def test_serve_refuses_to_start_without_its_signing_secret(tmp_path: Path) -> None:
    config = init_project(tmp_path / "proj", date(2026, 11, 23), customers=3)
    store.create_schema(store.make_engine(load_settings(config).store.url))
    (config.parent / ".mailer-secret").unlink()
    with pytest.raises(RuntimeError, match=r"error: .*secret_file: cannot read"):
        Served(config)
