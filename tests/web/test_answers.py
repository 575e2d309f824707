"""Answer links over real HTTP (`mailer serve` on loopback): a GET records nothing, Send records, bad tokens 400.

Also the "mark handled" link of the owner's notice, and the opt-in click counting with its scanner heuristics.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from mailer import store
from mailer.compose.tokens import HANDLED, make_answer_token, make_token
from mailer.config import Settings, load_settings
from mailer.outbox.feedback import NOTICE_CAMPAIGN
from mailer.service.project import init_project
from mailer.store.tables import Feedback, SendLog
from mailer.web.answers import scanner_signs
from tests.support.factories import add_customer, add_sent_question
from tests.support.served import Reply, Served

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC)
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-GB,en;q=0.9",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-User": "?1",
}


class Site:
    def __init__(self, served: Served, settings: Settings, engine: Engine) -> None:
        self.served, self.settings, self.engine = served, settings, engine
        self.secret = settings.sender.secret.reveal()
        self.count = 0

    def question(self, owner: str | None = "hannah@northwind.example") -> int:
        """A new customer with a delivered "how did we do?" email; returns its send-log row id."""
        self.count += 1
        customer = add_customer(
            self.engine, f"A{self.count}", since=date(2020, 1, 1), owner_name="Hannah" if owner else None,
            owner_email=owner,
        )
        return add_sent_question(self.engine, customer, sent_at=NOW - timedelta(days=1))

    def path(self, row_id: int, answer: int, issued: datetime = NOW) -> str:
        return f"/mailer/a/{make_answer_token(self.secret, row_id, answer, issued)}"

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> Reply:
        body = urllib.parse.urlencode(fields).encode()
        return self.served.request("POST", path, body, "application/x-www-form-urlencoded", headers)

    def send(self, path: str, answer: int, comment: str = "") -> Reply:
        """What a browser does: load the page, then press Send with its form."""
        page = self.served.request("GET", path, headers=BROWSER)
        assert page.status == 200, page.body
        [stamp] = re.findall(r'name="stamp" value="([^"]+)"', page.body)
        return self.post(path, {"stamp": stamp, "answer": str(answer), "comment": comment})

    def answers(self, row_id: int | None = None) -> list[tuple[int, str, str]]:
        query = select(Feedback.answer, Feedback.comment, Feedback.source).order_by(Feedback.id)  # type: ignore[arg-type]
        if row_id is not None:
            query = query.where(Feedback.send_log_id == row_id)  # type: ignore[arg-type]
        with Session(self.engine) as session:
            return [tuple(r) for r in session.execute(query).all()]  # type: ignore[misc]

    def notices(self) -> int:
        with Session(self.engine) as session:
            return session.execute(
                select(func.count()).select_from(SendLog).where(SendLog.campaign == NOTICE_CAMPAIGN)  # type: ignore[arg-type]
            ).scalar_one()


def _site(tmp: Path, **feedback: str) -> tuple[Path, Settings, Engine]:
    config = init_project(tmp / "proj", date(2026, 11, 23), customers=3)
    text = config.read_text(encoding="utf-8")
    for key, value in feedback.items():
        text = text.replace(f"\n{key} = ", f"\n{key} = {value}  # was: ", 1)
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    return config, settings, engine


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    config, settings, engine = _site(tmp_path_factory.mktemp("answers"))
    served = Served(config)
    yield Site(served, settings, engine)
    assert served.stop() == 0
    engine.dispose()


def test_a_get_on_an_answer_link_shows_that_answer_selected_and_records_nothing(site: Site) -> None:
    row = site.question()
    for _ in range(3):  # a scanner, a preview pane, the person: none of them answers by looking
        page = site.served.request("GET", site.path(row, 4), headers=BROWSER)
        assert page.status == 200
    assert re.search(r'value="4" checked', page.body)
    assert len(re.findall(r"\bchecked>", page.body)) == 1
    assert '<textarea id="comment" name="comment"' in page.body and 'id="send"' in page.body
    assert "<script" not in page.body  # works without JavaScript
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    assert site.answers(row) == []


def test_send_records_the_answer_once_and_a_second_send_changes_it(site: Site) -> None:
    row = site.question()
    reply = site.send(site.path(row, 5), 5, "Lovely beans")
    assert reply.status == 200 and "Thank you" in reply.body
    assert site.answers(row) == [(5, "Lovely beans", "page")]
    reply = site.send(site.path(row, 5), 3, "  On second thought: late  ")
    assert reply.status == 200
    assert site.answers(row) == [(3, "On second thought: late", "page")]
    assert site.notices() == 0  # 3 of 5 is not unhappy


def test_an_unhappy_answer_queues_one_notice_however_often_it_is_sent(site: Site) -> None:
    row = site.question()
    before = site.notices()
    site.send(site.path(row, 1), 1, "Arrived crushed")
    site.send(site.path(row, 1), 2, "Arrived crushed, and late")
    assert site.notices() == before + 1
    with Session(site.engine) as session:
        notice = session.execute(select(SendLog).where(SendLog.campaign == NOTICE_CAMPAIGN)  # type: ignore[arg-type]
                                 .order_by(SendLog.id.desc())).scalars().first()  # type: ignore[union-attr]
    assert notice is not None and notice.status == "queued" and notice.to_address == "hannah@northwind.example"
    assert notice.occasion["comment"] == "Arrived crushed, and late"  # refreshed while still waiting to go
    assert notice.occasion["answer"] == 2


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda p: p[:-6], id="truncated"),
        pytest.param(lambda p: re.sub(r"/a/(\d+)\.", lambda m: f"/a/{int(m.group(1)) + 1}.", p), id="other-row"),
        pytest.param(lambda p: re.sub(r"/a/(\d+)\.\d", lambda m: f"/a/{m.group(1)}.1", p), id="altered-answer"),
        pytest.param(lambda p: p.rsplit(".", 1)[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", id="forged"),
        pytest.param(lambda p: p + ".5", id="extra-field"),
    ],
)
def test_a_spoiled_token_gets_400_on_get_and_post_and_nothing_is_written(site: Site, spoil: object) -> None:
    row = site.question()
    other = site.question()  # the next row exists, so "other-row" names a real message
    good = site.path(row, 5)
    page = site.served.request("GET", good, headers=BROWSER)
    [stamp] = re.findall(r'name="stamp" value="([^"]+)"', page.body)
    bad = spoil(good)  # type: ignore[operator]
    assert site.served.request("GET", bad, headers=BROWSER).status == 400
    reply = site.post(bad, {"stamp": stamp, "answer": "1", "comment": "x"})
    assert reply.status == 400 and "This link is not valid" in reply.body
    assert site.answers(row) == [] and site.answers(other) == []


def test_an_expired_token_gets_400_and_nothing_is_written(site: Site) -> None:
    row = site.question()
    old = site.path(row, 1, issued=NOW - site.settings.feedback.link_max_age - timedelta(hours=1))
    assert site.served.request("GET", old, headers=BROWSER).status == 400
    assert site.post(old, {"answer": "1", "stamp": "1.x"}).status == 400
    assert site.answers(row) == []


def test_a_post_without_the_pages_stamp_or_from_another_site_is_refused(site: Site) -> None:
    row = site.question()
    path = site.path(row, 1)
    assert site.post(path, {"answer": "1"}).status == 400  # a scanner or a forged form: no stamp
    other = site.path(site.question(), 1)
    page = site.served.request("GET", other, headers=BROWSER)
    [foreign_stamp] = re.findall(r'name="stamp" value="([^"]+)"', page.body)
    assert site.post(path, {"answer": "1", "stamp": foreign_stamp}).status == 400  # a stamp of another page
    page = site.served.request("GET", path, headers=BROWSER)
    [stamp] = re.findall(r'name="stamp" value="([^"]+)"', page.body)
    assert site.post(path, {"answer": "1", "stamp": stamp}, {"Sec-Fetch-Site": "cross-site"}).status == 400
    assert site.post(path, {"answer": "9", "stamp": stamp}).status == 400  # not on the scale
    assert site.answers(row) == []


def test_the_owners_link_marks_handled_on_post_only(site: Site) -> None:
    row = site.question()
    site.send(site.path(row, 1), 1)
    with Session(site.engine) as session:
        feedback_id = session.execute(select(Feedback.id).where(Feedback.send_log_id == row)).scalar_one()  # type: ignore[arg-type]
    path = f"/mailer/feedback/{make_token(site.secret, feedback_id, HANDLED, issued=NOW)}"
    page = site.served.request("GET", path)
    assert page.status == 200 and "Mark this answer handled?" in page.body

    def waiting() -> bool:
        with Session(site.engine) as session:
            return session.get(Feedback, feedback_id).unhappy_since is not None  # type: ignore[union-attr]

    assert waiting()
    assert site.post(path, {}).status == 200
    assert not waiting()
    assert "Already handled" in site.served.request("GET", path).body
    stale = f"/mailer/feedback/{make_token(site.secret, feedback_id, HANDLED, issued=NOW - timedelta(days=31))}"
    assert site.post(stale, {}).status == 400
    forged = f"/mailer/feedback/{make_token('not-the-secret', feedback_id, HANDLED, issued=NOW)}"
    assert site.post(forged, {}).status == 400


def test_counted_clicks_record_a_browsers_get_but_not_a_scanners(tmp_path: Path) -> None:
    config, settings, engine = _site(tmp_path, count_clicks="true")
    served = Served(config)
    try:
        site = Site(served, settings, engine)
        row = site.question()
        scanners = [
            {"User-Agent": "python-requests/2.32"},
            {**BROWSER, "User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"},
            {**BROWSER, "Sec-Purpose": "prefetch"},
            {k: v for k, v in BROWSER.items() if k != "Accept-Language"},
            {k: v for k, v in BROWSER.items() if k != "Sec-Fetch-User"},
        ]
        for headers in scanners:
            assert served.request("GET", site.path(row, 1), headers=headers).status == 200
        assert site.answers(row) == []
        assert served.request("GET", site.path(row, 4), headers=BROWSER).status == 200
        assert site.answers(row) == [(4, "", "click")]
        site.send(site.path(row, 4), 5, "Send still wins")
        assert site.answers(row) == [(5, "Send still wins", "page")]
    finally:
        assert served.stop() == 0
        engine.dispose()


@pytest.mark.parametrize(
    ("headers", "sent_ago", "sign"),
    [
        (BROWSER, timedelta(hours=3), None),
        ({}, timedelta(hours=3), "no User-Agent"),
        ({**BROWSER, "Purpose": "prefetch"}, timedelta(hours=3), "a prefetch"),
        ({**BROWSER, "User-Agent": "Mozilla/5.0 HeadlessChrome/126.0"}, timedelta(hours=3), "User-Agent of a tool"),
        ({**BROWSER, "Accept": "*/*"}, timedelta(hours=3), "not a browser's request"),
        (BROWSER, timedelta(seconds=40), "within two minutes of delivery"),
    ],
)
def test_scanner_signs(headers: dict[str, str], sent_ago: timedelta, sign: str | None) -> None:
    found = scanner_signs(headers, NOW - sent_ago, NOW)
    assert found == sign if sign is None else found is not None and found.startswith(sign)
