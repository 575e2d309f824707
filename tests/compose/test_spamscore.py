"""SpamAssassin's scores: its output read back rule by rule, and the real program run on real messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.compose.spamscore import Rule, Score, SpamAssassinError, parse_scores, score_messages
from tests.support.spam import GTUBE, needs_spamassassin

# Real output of SpamAssassin 4.0.1 (Debian) for three messages scored in one call, with the runner's
# options: a plain note, an HTML note with the old hidden preheader, and GTUBE (wrapped as spam).
CAPTURED = Path(__file__).resolve().parent.parent / "support" / "data" / "spamassassin-output.txt"
CAPTURED_MARKER = "Mailer-Score-5f0c2a9e41d7b3c8"


def message(body: str, subject: str = "6 years together, Ann: thank you") -> bytes:
    return (
        "From: Northwind Coffee Roasters <hello@northwind.example>\r\n"
        "To: Ann Lee <ann@example.com>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n"
        "Message-ID: <179641137802.13959.8339494113236517967@northwind.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "\r\n"
        f"{body}\r\n"
    ).encode()


def test_captured_output_reads_as_one_score_per_message_with_every_rule_and_its_points() -> None:
    scores = parse_scores(CAPTURED.read_text(encoding="utf-8"), CAPTURED_MARKER)
    assert scores == [
        Score(-0.0, (Rule("NO_RECEIVED", -0.001), Rule("NO_RELAYS", -0.001))),
        Score(
            1.8,
            (
                Rule("FONT_INVIS_MSGID", 1.0),
                Rule("HTML_FONT_LOW_CONTRAST", 0.713),
                Rule("MIME_HTML_ONLY", 0.1),
                Rule("HTML_MESSAGE", 0.001),
                Rule("NO_RECEIVED", -0.001),
                Rule("NO_RELAYS", -0.001),
            ),
        ),
        Score(1000.0, (Rule("GTUBE", 1000.0), Rule("NO_RECEIVED", -0.001), Rule("NO_RELAYS", -0.001))),
    ]


def test_a_score_is_described_by_the_rules_that_moved_it() -> None:
    clean, preheader, gtube = parse_scores(CAPTURED.read_text(encoding="utf-8"), CAPTURED_MARKER)
    assert clean.describe() == "0.0"
    assert preheader.describe() == "1.8 (FONT_INVIS_MSGID 1.0, HTML_FONT_LOW_CONTRAST 0.7, MIME_HTML_ONLY 0.1)"
    assert gtube.describe() == "1000.0 (GTUBE 1000.0)"


def test_only_the_header_with_the_runs_marker_counts() -> None:
    output = CAPTURED.read_text(encoding="utf-8")
    assert parse_scores(output, "Mailer-Score-0000000000000000") == []
    assert parse_scores("X-Spam-M: 0.0 none\r\nX-Spam-Status: No, score=0.0\r\n", "M") == [Score(0.0, ())]


def test_a_header_that_does_not_read_as_score_and_rules_is_refused() -> None:
    with pytest.raises(SpamAssassinError, match="not 'SCORE RULE=POINTS"):
        parse_scores("X-Spam-M: high FONT_INVIS_MSGID=1\n", "M")


def test_a_program_that_cannot_run_or_fails_is_an_error_not_a_clean_score(tmp_path: Path) -> None:
    with pytest.raises(SpamAssassinError, match="could not run"):
        score_messages([message("Hello")], str(tmp_path / "no-such-spamassassin"))
    with pytest.raises(SpamAssassinError, match="exit status 1"):
        score_messages([message("Hello")], "false")


@needs_spamassassin
def test_spamassassin_scores_each_message_in_order_in_one_call() -> None:
    note = message("Happy anniversary, Ann. We still read every note you send us.\r\n\r\nWarmly,\r\nHannah Lee")
    spam = message(f"This is the GTUBE.\r\n\r\n{GTUBE}", subject="Test spam mail (GTUBE)")
    scores = score_messages([note, spam, note])
    assert [score.points for score in scores] == [0.0, 1000.0, 0.0]
    assert scores[1].counted == (Rule("GTUBE", 1000.0),)


def test_no_messages_need_no_spamassassin() -> None:
    assert score_messages([], "no-such-spamassassin") == []
