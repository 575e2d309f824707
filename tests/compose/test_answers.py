"""The question in the email, the answer page marketers edit, and the owner's notice: checked like every template."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from mailer.cli import cli
from mailer.compose.answers import answer_links, ask_view, sample_ask
from mailer.compose.context import sample_customers, sample_occasion, template_context
from mailer.compose.render import Renderer
from mailer.compose.tokens import read_answer_token
from mailer.config import Campaign, Settings
from mailer.service.project import SHIPPED_TEMPLATES
from mailer.web.preview import create_app
from tests.support.samples import SENDER, SHIPPED

SHIPPED_DAY = date(2026, 11, 23)
FACES = Campaign("faces", "follow_up", "follow_up", ask="rating", scale=("😞 Not good", "😐 Fine", "😊 Great"),
                 unhappy_at_most=1)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "templates" / "email"
    shutil.copytree(SHIPPED_TEMPLATES, target)
    monkeypatch.chdir(tmp_path)
    return target


def check(folder: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["templates", "check", "--no-spam-score", str(folder)])
    return result.exit_code, [line for line in result.stdout.splitlines() if line]


def test_each_answer_gets_a_signed_link_for_its_row_and_answer() -> None:
    issued = datetime(2026, 11, 23, tzinfo=UTC)
    links = answer_links("s3cret", "https://n.example/mailer", FACES, 812, issued)
    ask = ask_view(FACES, links)
    assert [a["label"] for a in ask["answers"]] == ["😞 Not good", "😐 Fine", "😊 Great"]
    assert [a["words"] for a in ask["answers"]] == ["😞 Not good", "😐 Fine", "😊 Great"]
    for n, link in enumerate(links, start=1):
        assert link.startswith("https://n.example/mailer/a/")
        token = link.rsplit("/", 1)[1]
        assert read_answer_token("s3cret", token, max_age=timedelta(days=1), now=issued) == (812, n)
    assert ask_view(None, [])["answers"] == []


def test_the_shipped_follow_up_asks_with_one_real_text_link_per_answer_in_both_parts() -> None:
    customer = sample_customers()["sample-full"]
    campaign = SHIPPED.campaign("how-did-we-do")
    ask = sample_ask(campaign, SENDER.unsubscribe_url)
    occasion = sample_occasion("follow_up", customer, SHIPPED_DAY, campaign)
    email = Renderer(SHIPPED_TEMPLATES).render("follow_up", template_context(customer, occasion, SENDER, "u", ask))
    for answer in ask["answers"]:
        assert answer["url"] in email.text
        assert f'href="{answer["url"]}"' in email.html and f'title="{answer["words"]}"' in email.html
    asking_nothing = Renderer(SHIPPED_TEMPLATES).render("follow_up", template_context(customer, occasion, SENDER, "u"))
    assert "/a/" not in asking_nothing.html and "A line or two in reply is plenty" in asking_nothing.text


def test_the_shipped_answer_page_and_notice_pass_the_check(folder: Path) -> None:
    code, lines = check(folder)
    assert code == 0, lines
    assert lines[-1].endswith(": no problems")


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("{{ comment }}</textarea>", "{{ coment }}</textarea>", "unknown variable 'coment' (did you mean 'comment'?)"),
        ('<input type="hidden" name="stamp" value="{{ stamp }}">', "", 'keep <input type="hidden" name="stamp"'),
        ('<form method="post"', '<form method="get"', "the form must post"),
        ("{% endfor %}\n</div>", "</div>", "templates/email/_pages/answer.html:"),
    ],
)
def test_a_broken_answer_page_is_reported_with_its_file(folder: Path, old: str, new: str, problem: str) -> None:
    page = folder / "_pages" / "answer.html"
    text = page.read_text(encoding="utf-8")
    assert old in text
    page.write_text(text.replace(old, new, 1), encoding="utf-8")
    code, lines = check(folder)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("templates/email/_pages/answer.html:") and problem in lines[0]


def test_the_notice_needs_no_unsubscribe_link_but_keeps_the_postal_address(folder: Path) -> None:
    body = folder / "feedback_notice" / "body.txt"
    text = body.read_text(encoding="utf-8")
    body.write_text(text.replace("{{ company.name }} · {{ company.postal_address }}", ""), encoding="utf-8")
    code, lines = check(folder)
    assert code == 2
    assert lines == ['templates/email/feedback_notice/body.txt:1: no postal address: add {{ company.postal_address }} '
                     '(or include "_footer.txt")']


def test_the_preview_shows_the_answer_page_before_and_after_send(settings: Settings) -> None:
    client: FlaskClient = create_app(settings).test_client()
    index = client.get("/").get_data(as_text=True)
    assert 'id="answer-page"' in index and "feedback_notice" in index
    page = client.get("/answer-page").get_data(as_text=True)
    assert "How did we do?" in page and 'value="5" checked' in page
    thanks = client.get("/answer-page?thanks=1").get_data(as_text=True)
    assert "Thank you, Amelia!" in thanks
    notice = client.get("/t/feedback_notice").get_data(as_text=True)
    assert "answered" in notice and "The beans arrived crushed" in notice
