"""`mailer feedback`, `feedback resolve` and the answered column of `mailer stats`, over a generated set of answers;
and the configuration of the question (`ask`, `scale`, `unhappy_at_most`, `[feedback]`)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from mailer.cli import cli
from mailer.config import ConfigError, Settings, load_settings
from mailer.outbox import feedback
from tests.support.factories import add_customer, add_sent_question


def invoke(project: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(project), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def generate(settings: Settings, engine: Engine, seed: int = 7) -> list[tuple[str, int | None]]:
    """60 questions sent in October and November 2026, about two thirds answered; returns (month, answer)."""
    rng = random.Random(seed)
    campaign = settings.campaign("how-did-we-do")
    made = []
    for n in range(60):
        customer = add_customer(engine, f"G{n}", since=date(2020, 1, 1))
        sent = datetime(2026, 10, 1, 9, tzinfo=UTC) + timedelta(days=n)  # Oct 1 … Nov 29
        row = add_sent_question(engine, customer, key=f"follow_up:{n}", sent_at=sent)
        value = rng.choice([None, 1, 2, 3, 4, 5, 5, 4])
        if value is not None:
            question = feedback.asked(engine, row)
            assert question is not None
            feedback.record_answer(engine, question, campaign, value, f"comment {n}" if n % 3 == 0 else "",
                                   feedback.Source.PAGE, sent + timedelta(days=2), settings.feedback, settings.sender)
        made.append((f"{sent:%Y-%m}", value))
    return made


def expected(made: list[tuple[str, int | None]], period: str) -> dict[str, object]:
    picked = [answer for month, answer in made if period in ("total", month)]
    answers = [a for a in picked if a is not None]
    counts = Counter(answers)
    return {
        "campaign": "how-did-we-do",
        "month sent": period,
        "sent": len(picked),
        "responses": len(answers),
        "response rate": round(len(answers) / len(picked), 3),
        "average": round(sum(answers) / len(answers), 2),
        "distribution": " ".join(f"{a}:{counts[a]}" for a in range(1, 6)),
    }


def test_the_summary_matches_the_generated_answers_per_month_and_in_total(
    project: Path, settings: Settings, engine: Engine
) -> None:
    made = generate(settings, engine)
    shown = json.loads(invoke(project, "feedback", "--format", "json"))
    assert shown["summary"] == [expected(made, "2026-10"), expected(made, "2026-11"), expected(made, "total")]
    assert len(shown["answers"]) == sum(1 for _, a in made if a is not None)
    waiting = [a for a in shown["answers"] if a["status"] == "waiting"]
    assert len(waiting) == sum(1 for _, a in made if a is not None and a <= 2)

    november = json.loads(invoke(project, "feedback", "--since", "2026-11-01", "--format", "json"))
    assert november["summary"] == [
        {**expected(made, "2026-11"), "month sent": "2026-11"},
        {**expected(made, "2026-11"), "month sent": "total"},
    ]

    table = invoke(project, "feedback")
    assert re.search(r"how-did-we-do\s+total\s+60\s+\d+\s+\d+%\s+\d\.\d\d\s+1:\d+ 2:\d+", table)
    assert invoke(project, "feedback", "--format", "csv").splitlines()[0] == (
        "campaign,month sent,sent,responses,response rate,average,distribution"
    )
    total = expected(made, "total")
    stats = invoke(project, "stats")
    assert re.search(rf"how-did-we-do .* {total['responses']}/60 \({round(100 * total['responses'] / 60)}%\)", stats)


def test_resolving_an_answer_ends_its_wait(project: Path, settings: Settings, engine: Engine) -> None:
    made = generate(settings, engine, seed=3)
    assert any(a is not None and a <= 2 for _, a in made)
    answers = json.loads(invoke(project, "feedback", "--format", "json"))["answers"]
    first = next(a for a in answers if a["status"] == "waiting")
    assert invoke(project, "feedback", "resolve", str(first["id"])) == f"{first['id']}: resolved\n"
    after = {a["id"]: a["status"] for a in json.loads(invoke(project, "feedback", "--format", "json"))["answers"]}
    assert after[first["id"]].startswith("handled ")


def test_an_unknown_campaign_is_one_clear_line(project: Path, engine: Engine) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "feedback", "--campaign", "how-did-we-doo"])
    assert result.exit_code == 2
    assert result.output == "error: mailer.toml: no campaign named 'how-did-we-doo' (did you mean 'how-did-we-do'?)\n"


def test_the_shipped_campaign_asks_on_a_scale_of_five_and_two_or_less_is_unhappy(settings: Settings) -> None:
    campaign = settings.campaign("how-did-we-do")
    assert (campaign.ask, campaign.scale, campaign.unhappy_at_most) == ("rating", ("1", "2", "3", "4", "5"), 2)
    assert settings.feedback.link_max_age == timedelta(days=60) and not settings.feedback.count_clicks
    assert settings.policy.unhappy_pause_days == 30


def _edit(project: Path, old: str, new: str) -> None:
    text = project.read_text(encoding="utf-8")
    assert old in text
    project.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_three_faces_with_labels_default_to_the_lowest_being_unhappy(project: Path) -> None:
    _edit(project, "scale = 5 ", 'scale = ["😞 Not good", "😐 Fine", "😊 Great"] ')
    _edit(project, "unhappy_at_most = 2 ", "# ")
    campaign = load_settings(project).campaign("how-did-we-do")
    assert campaign.scale == ("😞 Not good", "😐 Fine", "😊 Great") and campaign.unhappy_at_most == 1


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('ask = "rating"', 'ask = "stars"', "mailer.toml: [campaign how-did-we-do] ask: must be one of rating"),
        ("scale = 5 ", "scale = 1 ", "mailer.toml: [campaign how-did-we-do] scale: must be 2 to 10 steps, got 1"),
        ("scale = 5 ", 'scale = ["Good", "Good"] ', "mailer.toml: [campaign how-did-we-do] scale: each label"),
        ("unhappy_at_most = 2 ", "unhappy_at_most = 5 ",
         "mailer.toml: [campaign how-did-we-do] unhappy_at_most: must be below the top answer (5), got 5"),
        ('ask = "rating"', "# ", "mailer.toml: [campaign how-did-we-do] scale: goes with ask = \"rating\""),
        ('link_max_age = "60d"', 'link_max_age = "soon"', "mailer.toml: [feedback] link_max_age: expected a duration"),
        ("count_clicks = false", "count_click = false", "mailer.toml: [feedback]"),
    ],
)
def test_a_bad_question_setting_is_one_line_naming_the_key(project: Path, old: str, new: str, message: str) -> None:
    _edit(project, old, new)
    with pytest.raises(ConfigError) as caught:
        load_settings(project)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)
