"""Every shipped template, sent by a real pass, makes a message inboxes accept.

Daily passes over the sample project, until every template has been sent,
write real .eml files; each is checked for what the mailbox
providers and the law ask: one-click unsubscribe headers that are not folded,
the same link and the postal address in both parts, a text part that says
what the HTML says, Message-ID on the From domain, a Date, no URL shorteners,
no all-image mail, and a SpamAssassin score of at most 0.5 (one message per template).
"""

from __future__ import annotations

import email.policy
import html
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlmodel import Session

from mailer import store
from mailer.compose.render import Renderer
from mailer.compose.spamscore import WARN_ABOVE, score_messages
from mailer.compose.tokens import read_link, read_mailto_token
from mailer.config import Settings, load_settings
from mailer.contacts import importer
from mailer.delivery.transport import MaildirTransport
from mailer.outbox import feedback
from mailer.outbox.feedback import NOTICE_TEMPLATE
from mailer.planning.clock import PassClock
from mailer.service import passes
from mailer.service.project import init_project
from mailer.store.tables import SendLog
from tests.support.spam import needs_spamassassin

DAY = date(2026, 11, 23)
MAX_DAYS = 40
SHORTENERS = {
    "bit.ly",
    "t.co",
    "tinyurl.com",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "t.ly",
    "rb.gy",
    "tiny.cc",
    "lnkd.in",
    "s.id",
}
URL = re.compile(r"https?://[^\s<>\"')]+")


class Sent:
    def __init__(self, raw: bytes, template: str, customer_id: int, locale: str) -> None:
        self.raw = raw
        self.template = template
        self.customer_id = customer_id
        self.locale = locale
        self.msg: EmailMessage = BytesParser(policy=email.policy.default).parsebytes(raw)  # type: ignore[assignment]

    def part(self, subtype: str) -> str:
        body = self.msg.get_body((subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, list[Sent]]]:
    config = init_project(tmp_path_factory.mktemp("deliver") / "proj", DAY, customers=300)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    for kind, run in (("customers", importer.import_customers), ("interactions", importer.import_interactions)):
        run(engine, config.parent / "data" / f"{kind}.csv")
    folder = config.parent / "delivered"
    shipped = set(Renderer(settings.render.templates).names()) - {NOTICE_TEMPLATE}  # sent below, not by a pass
    wanted = {(name, locale) for name in shipped for locale in ("en", "de")}  # the demo ships English and German
    for offset in range(MAX_DAYS):  # day by day, until every shipped template has been sent once in each language
        passes.run_pass(engine, settings, PassClock.on(DAY + timedelta(days=offset)), MaildirTransport(folder))
        with Session(engine) as session:
            rows = session.execute(
                select(SendLog.message_id, SendLog.template, SendLog.customer_id, SendLog.locale).where(  # type: ignore[call-overload]
                    SendLog.status == "sent"
                )
            ).all()
        if {(template, locale) for _, template, _, locale in rows} >= wanted:
            break
    # An unhappy answer to the first follow-up that asked: its notice to the owner goes with the next pass.
    with Session(engine) as session:
        asked_row = session.execute(
            select(SendLog.id).where(SendLog.template == "follow_up", SendLog.status == "sent").limit(1)  # type: ignore[arg-type]
        ).scalar_one()
    question = feedback.asked(engine, asked_row)
    assert question is not None
    campaign = settings.campaign(question.campaign)
    now = datetime.now(UTC)
    feedback.record_answer(engine, question, campaign, 1, "The beans arrived crushed.", feedback.Source.PAGE, now,
                           settings.feedback, settings.sender)
    passes.run_pass(engine, settings, PassClock.on(DAY + timedelta(days=offset)), MaildirTransport(folder))
    with Session(engine) as session:
        rows = session.execute(
            select(SendLog.message_id, SendLog.template, SendLog.customer_id, SendLog.locale).where(  # type: ignore[call-overload]
                SendLog.status == "sent"
            )
        ).all()
    by_id = {message_id: (template, customer_id, locale) for message_id, template, customer_id, locale in rows}
    messages = []
    for path in sorted((folder / "new").glob("*.eml")):
        raw = path.read_bytes()
        message_id = str(BytesParser(policy=email.policy.default).parsebytes(raw)["Message-ID"])
        messages.append(Sent(raw, *by_id[message_id]))
    engine.dispose()
    yield settings, messages


def test_every_shipped_template_was_sent(sent: tuple[Settings, list[Sent]]) -> None:
    settings, messages = sent
    names = set(Renderer(settings.render.templates).names()) - {NOTICE_TEMPLATE}
    wanted = {(name, locale) for name in names for locale in ("en", "de")}
    assert {(m.template, m.locale) for m in messages} == wanted | {(NOTICE_TEMPLATE, "en")}  # the owner reads English


def test_one_click_headers_are_present_unfolded_and_point_at_the_recipient(sent: tuple[Settings, list[Sent]]) -> None:
    settings, messages = sent
    secret = settings.sender.secret.reveal()
    base = settings.sender.unsubscribe_url
    for m in to_customers(messages):
        [line] = [raw for raw in m.raw.split(b"\n") if raw.lower().startswith(b"list-unsubscribe:")]
        following = m.raw.split(line, 1)[1].split(b"\n", 2)[1]
        assert not following[:1].isspace(), "List-Unsubscribe must not be folded"
        https, mailto = re.fullmatch(r"<([^>]+)>, <([^>]+)>", str(m.msg["List-Unsubscribe"])).groups()  # type: ignore[union-attr]
        assert https.startswith(f"{base}/u/")
        link = read_link(secret, https.rsplit("/", 1)[1])  # names the customer and the message's send-log row
        assert link.customer_id == m.customer_id and link.send_log_id is not None
        local, domain = settings.sender.unsubscribe_mailto.split("@")
        tagged = re.fullmatch(rf"mailto:{local}\+([0-9a-z-]+)@{re.escape(domain)}\?subject=unsubscribe", mailto)
        assert tagged is not None, mailto
        assert read_mailto_token(secret, tagged.group(1)) == m.customer_id
        assert str(m.msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"


def test_both_parts_carry_the_unsubscribe_link_and_the_postal_address(sent: tuple[Settings, list[Sent]]) -> None:
    settings, messages = sent
    for m in to_customers(messages):
        link = str(m.msg["List-Unsubscribe"]).split(">", 1)[0].lstrip("<")
        text, page = m.part("plain"), html.unescape(m.part("html"))
        assert link in text, m.template
        assert f'href="{link}"' in page, m.template
        for part in (text, page):
            assert settings.sender.postal_address in " ".join(part.split()), m.template


def to_customers(messages: list[Sent]) -> list[Sent]:
    """All but the owners' notices (staff mail: no unsubscribe link, see the test below)."""
    return [m for m in messages if m.template != NOTICE_TEMPLATE]


def test_the_owners_notice_goes_to_the_owner_answers_reach_the_customer_and_it_cannot_unsubscribe_them(
    sent: tuple[Settings, list[Sent]],
) -> None:
    settings, messages = sent
    [notice] = [m for m in messages if m.template == NOTICE_TEMPLATE]
    assert "List-Unsubscribe" not in notice.msg and "List-Unsubscribe-Post" not in notice.msg
    text, page = notice.part("plain"), html.unescape(notice.part("html"))
    assert f"{settings.sender.unsubscribe_url}/u/" not in text + page  # no link that would opt the customer out
    assert "The beans arrived crushed." in text and "The beans arrived crushed." in page
    assert f"{settings.sender.unsubscribe_url}/feedback/" in text
    for part in (text, page):
        assert settings.sender.postal_address in " ".join(part.split())
    follow_up = next(m for m in messages if m.template == "follow_up" and m.customer_id == notice.customer_id)
    assert str(notice.msg["Reply-To"]).endswith(f"{follow_up.msg['To'].addresses[0].addr_spec}>")  # type: ignore[union-attr]
    assert str(notice.msg["To"]) != str(follow_up.msg["To"])


def test_message_id_is_on_the_from_domain_and_the_date_is_set(sent: tuple[Settings, list[Sent]]) -> None:
    settings, messages = sent
    for m in messages:
        assert str(m.msg["Message-ID"]).endswith(f"@{settings.sender.domain}>")
        assert str(m.msg["From"]).endswith(f"<{settings.sender.from_address}>")
        assert parsedate_to_datetime(str(m.msg["Date"])).tzinfo is not None
        assert m.msg.get_content_type() == "multipart/alternative"


class _Visible(HTMLParser):
    """The words a reader sees in the HTML part, and its images."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self.images = 0
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "head", "title", "script"):
            self._hidden += 1
        if tag == "img":
            self.images += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "head", "title", "script"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.words.extend(words(data))


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_the_text_part_says_what_the_html_says_and_the_html_is_not_all_images(
    sent: tuple[Settings, list[Sent]],
) -> None:
    _settings, messages = sent
    for m in messages:
        visible = _Visible()
        visible.feed(m.part("html"))
        # Links are spelled out in the text part and hidden in the HTML's href: their tokens are not words.
        in_html, in_text = set(visible.words), set(words(URL.sub(" ", m.part("plain"))))
        assert len(visible.words) >= 40, f"{m.template}: too little text next to {visible.images} images"
        assert visible.images <= len(visible.words) // 50
        shared = in_html & in_text
        assert len(shared) >= 0.8 * len(in_html), f"{m.template}: html says {sorted(in_html - in_text)}"
        assert len(shared) >= 0.8 * len(in_text), f"{m.template}: text says {sorted(in_text - in_html)}"


def test_no_link_uses_a_url_shortener(sent: tuple[Settings, list[Sent]]) -> None:
    settings, messages = sent
    allowed = {urlsplit(settings.sender.unsubscribe_url).hostname, urlsplit(settings.sender.website or "").hostname}
    for m in messages:
        for url in URL.findall(m.part("plain")) + URL.findall(html.unescape(m.part("html"))):
            host = urlsplit(url).hostname or ""
            assert host not in SHORTENERS, url
            assert host in allowed, url


def test_no_line_exceeds_the_smtp_limit(sent: tuple[Settings, list[Sent]]) -> None:
    for m in sent[1]:
        assert max(len(line) for line in m.raw.splitlines()) <= 998


@needs_spamassassin
def test_one_message_of_every_shipped_template_scores_at_most_half_a_point_with_spamassassin(
    sent: tuple[Settings, list[Sent]],
) -> None:
    _settings, messages = sent
    first_of_each = {f"{m.template} ({m.locale})": m for m in reversed(messages)}
    scores = score_messages([m.raw for m in first_of_each.values()])
    too_high = [
        f"{name}: spam score {score.describe()}"
        for name, score in zip(first_of_each, scores, strict=True)
        if score.points > WARN_ABOVE
    ]
    assert not too_high, "\n".join(too_high)
