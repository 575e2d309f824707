"""The preference page over real HTTP: a real `mailer serve` process, a real SQLite store.

A GET shows the choices and changes nothing; every change is a POST carrying the
page's CSRF value; each button does what it says and records where it came from.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import store
from mailer.compose.tokens import make_message_token, make_token
from mailer.config import Settings, load_settings
from mailer.contacts import importer, preferences
from mailer.contacts.preferences import add_months
from mailer.service.project import init_project
from mailer.store.tables import CampaignOptOut, Customer, MailPause, SendLog
from tests.support.served import Reply, Served

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Settings, Engine]]:
    config = init_project(tmp_path_factory.mktemp("prefs") / "proj", date(2026, 11, 23), customers=40)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    importer.import_customers(engine, config.parent / "data" / "customers.csv")
    served = Served(config)
    yield served, settings, engine
    assert served.stop() == 0
    engine.dispose()


_ids = iter(range(1, 41))


@pytest.fixture
def who(site: tuple[Served, Settings, Engine]) -> int:
    """A customer (without tags, so every customer campaign addresses them) no other test here touched."""
    with Session(site[2]) as session:
        while True:
            found = session.get(Customer, next(_ids))
            assert found is not None
            if not found.tags:
                return found.id or 0


@pytest.fixture
def secret(site: tuple[Served, Settings, Engine]) -> str:
    return site[1].sender.secret.reveal()


def state(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        customers = session.execute(
            select(Customer.id, Customer.unsubscribed_at, Customer.unsubscribe_source).order_by(Customer.id)
        ).all()
        opted = session.execute(select(CampaignOptOut.customer_id, CampaignOptOut.campaign)).all()
        paused = session.execute(select(MailPause.customer_id, MailPause.until)).all()
    return [tuple(r) for r in (*customers, *opted, *paused)]


def csrf_of(page: Reply) -> str:
    [value] = set(re.findall(r'name="csrf" value="([^"]+)"', page.body))
    return value


def post(served: Served, token: str, fields: dict[str, str]) -> Reply:
    body = urllib.parse.urlencode(fields).encode()
    return served.request("POST", f"/u/{token}", body, "application/x-www-form-urlencoded")


def press(served: Served, token: str, button: str, **fields: str) -> Reply:
    csrf = csrf_of(served.request("GET", f"/u/{token}"))
    return post(served, token, {"csrf": csrf, "do": button, **fields})


def heading(reply: Reply) -> str:
    found = re.search(r'<h1 id="heading">(.*?)</h1>', reply.body)
    assert found, reply.body
    return found.group(1)


def test_the_page_speaks_to_the_customer_and_names_the_company_and_its_postal_address(
    site: tuple[Served, Settings, Engine], secret: str, who: int
) -> None:
    served, settings, engine = site
    before = state(engine)
    page = served.request("GET", f"/u/{make_token(secret, who)}")
    assert page.status == 200
    assert settings.sender.company in page.body and settings.sender.postal_address in page.body
    assert "<script" not in page.body, "the page works without JavaScript"
    birthday = settings.campaign("birthday")
    assert f"<span>{birthday.title}" in page.body
    assert "Staff work anniversary" not in page.body, "a staff-only campaign is not offered to a customer"
    for months in preferences.PAUSE_MONTHS:
        assert f'name="months" value="{months}"' in page.body
    assert state(engine) == before, "a GET (a link scanner) changes nothing"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"do": "unsubscribe"}, id="no-csrf"),
        pytest.param({"do": "unsubscribe", "csrf": ""}, id="empty-csrf"),
        pytest.param({"do": "unsubscribe", "csrf": "A" * 32}, id="made-up-csrf"),
        pytest.param({"do": "pause", "months": "3", "csrf": "OTHER"}, id="other-links-csrf"),
    ],
)
def test_a_post_without_the_pages_csrf_value_is_refused_and_changes_nothing(
    site: tuple[Served, Settings, Engine], secret: str, fields: dict[str, str]
) -> None:
    served, _, engine = site
    if fields.get("csrf") == "OTHER":
        fields = {**fields, "csrf": csrf_of(served.request("GET", f"/u/{make_token(secret, 40)}"))}
    before = state(engine)
    reply = post(served, make_token(secret, 39), fields)
    assert reply.status == 403
    assert "Nothing was changed" in reply.body
    assert state(engine) == before


def test_an_unknown_button_or_campaign_or_pause_is_refused(
    site: tuple[Served, Settings, Engine], secret: str
) -> None:
    served, _, engine = site
    token = make_token(secret, 38)
    before = state(engine)
    assert press(served, token, "delete-everything").status == 400
    assert press(served, token, "leave", campaign="no-such-campaign").status == 400
    assert press(served, token, "pause", months="120").status == 400
    assert state(engine) == before


def test_leaving_one_campaign_and_rejoining_it(
    site: tuple[Served, Settings, Engine], secret: str, who: int
) -> None:
    served, settings, engine = site
    token = make_token(secret, who)
    reply = press(served, token, "leave", campaign="birthday")
    assert reply.status == 200
    assert heading(reply) == f"You will get no more “{settings.campaign('birthday').title}” emails"
    assert 'id="rejoin-birthday"' in reply.body
    assert preferences.preferences_of(engine, who).opted_out == {"birthday": "page"}
    with Session(engine) as session:
        assert session.get(Customer, who).unsubscribed_at is None  # type: ignore[union-attr]

    assert press(served, token, "leave", campaign="birthday").status == 200  # a double click: harmless
    reply = press(served, token, "rejoin", campaign="birthday")
    assert reply.status == 200 and 'id="leave-birthday"' in reply.body
    assert preferences.preferences_of(engine, who).opted_out == {}


def test_pausing_for_three_months_and_lifting_the_pause(
    site: tuple[Served, Settings, Engine], secret: str, who: int
) -> None:
    served, settings, engine = site
    token = make_token(secret, who)
    reply = press(served, token, "pause", months="3")
    assert reply.status == 200
    until = preferences.preferences_of(engine, who).paused_until
    assert until is not None
    with Session(engine) as session:
        zone = session.get(Customer, who).timezone or settings.sender.timezone  # type: ignore[union-attr]
    assert until == add_months(datetime.now(ZoneInfo(zone)).date(), 3), "three months from the customer's today"
    assert heading(reply) == f"Your emails are paused until {until:%-d %B %Y}"
    assert 'id="resume"' in reply.body

    assert press(served, token, "resume").status == 200
    assert preferences.preferences_of(engine, who).paused_until is None


def test_unsubscribing_from_everything_then_undoing_all_of_it(
    site: tuple[Served, Settings, Engine], secret: str, who: int
) -> None:
    served, _, engine = site
    token = make_token(secret, who)
    press(served, token, "leave", campaign="birthday")
    press(served, token, "pause", months="1")
    reply = press(served, token, "unsubscribe")
    assert heading(reply) == "You are unsubscribed"
    assert 'id="resubscribe"' in reply.body and 'id="everything"' in reply.body
    with Session(engine) as session:
        customer = session.get(Customer, who)
        assert customer is not None and customer.unsubscribe_source == "page"

    reply = press(served, token, "everything")
    assert heading(reply) == "You will get all our emails again"
    assert 'id="everything"' not in reply.body
    with Session(engine) as session:
        assert session.get(Customer, who).unsubscribed_at is None  # type: ignore[union-attr]
    assert preferences.preferences_of(engine, who) == preferences.Preferences()


def test_a_messages_link_records_which_message_it_came_from(
    site: tuple[Served, Settings, Engine], secret: str, who: int
) -> None:
    served, _, engine = site
    with Session(engine) as session:
        row = SendLog(
            customer_id=who, campaign="birthday", occasion_key="birthday:2026", occasion_kind="birthday",
            due_date=date(2026, 11, 23), template="birthday", status="sent",
        )
        session.add(row)
        session.commit()
        row_id = row.id or 0
    token = make_message_token(secret, who, row_id)
    press(served, token, "leave", campaign="we-miss-you")
    with Session(engine) as session:
        assert session.execute(
            select(CampaignOptOut.send_log_id).where(CampaignOptOut.customer_id == who)
        ).scalar_one() == row_id
    assert served.one_click(token).status == 200, "the one-click POST still unsubscribes from everything"
    with Session(engine) as session:
        customer = session.get(Customer, who)
        assert customer is not None
        assert (customer.unsubscribe_source, customer.unsubscribe_send_log_id) == ("one-click", row_id)

    forged = make_message_token(secret, who, row_id + 1).rsplit(".", 1)[0] + "." + token.rsplit(".", 1)[1]
    before = state(engine)
    assert served.request("GET", f"/u/{forged}").status == 400
    assert served.one_click(forged).status == 400
    assert state(engine) == before


def test_the_page_answers_at_the_path_of_the_configured_url_too(
    site: tuple[Served, Settings, Engine], secret: str
) -> None:
    served, settings, _ = site
    prefix = urllib.parse.urlsplit(settings.sender.unsubscribe_url).path.rstrip("/")
    token = make_token(secret, 37)
    page = served.request("GET", f"{prefix}/u/{token}")
    assert page.status == 200
    assert f'action="{prefix}/u/{token}"' in page.body
