"""Score messages with SpamAssassin, the way a mailbox provider's filter would read them.

SpamAssassin runs with its local rules only (``-L``: no network lookups, so
the score depends on the message alone), Bayes off (an untrained database
changes nothing, and a trained one would be this machine's, not the
recipient's) and an empty preferences file, so the same message scores the
same everywhere the same rules are installed. Many messages are scored by one
``spamassassin`` process: it takes a second or two to start, and a few
milliseconds per message after that.

SpamAssassin writes each message back with a header we ask for
(``X-Spam-<marker>: SCORE RULE=POINTS,RULE=POINTS``); :func:`parse_scores`
reads those headers, nothing else.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailer.errors import MailerError

SPAMASSASSIN = "spamassassin"
# Above this a message is worth a second look (each point makes the spam folder likelier);
# at 5, SpamAssassin's own default threshold, it is filed as spam.
WARN_ABOVE = 0.5
SPAM_ABOVE = 5.0
# A guard against a hung process, not a speed expectation.
_TIMEOUT_SECONDS = 600.0


class SpamAssassinError(MailerError):
    """SpamAssassin could not score the messages (not runnable, no rules, output not understood)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One SpamAssassin rule that fired, and the points it added."""

    name: str
    points: float

    def __str__(self) -> str:
        return f"{self.name} {_points(self.points)}"


@dataclass(frozen=True, slots=True)
class Score:
    """A message's total (as SpamAssassin reports it, to one decimal) and the rules that fired."""

    points: float
    rules: tuple[Rule, ...]  # most points first

    @property
    def counted(self) -> tuple[Rule, ...]:
        """The rules that moved the score (informational rules worth 0.0 left out)."""
        return tuple(rule for rule in self.rules if round(rule.points, 1) != 0)

    def describe(self) -> str:
        """``1.7 (FONT_INVIS_MSGID 1.0, HTML_FONT_LOW_CONTRAST 0.7)``; just ``0.0`` when no rule counted."""
        rules = ", ".join(str(rule) for rule in self.counted)
        return f"{_points(self.points)} ({rules})" if rules else _points(self.points)


def _points(value: float) -> str:
    return f"{value + 0.0:.1f}".replace("-0.0", "0.0")


def find_spamassassin() -> str | None:
    """The path of the ``spamassassin`` command, or None when it is not installed."""
    return shutil.which(SPAMASSASSIN)


def score_messages(messages: Sequence[bytes], spamassassin: str = SPAMASSASSIN) -> list[Score]:
    """Each message's score, in order, from one ``spamassassin`` process; raises SpamAssassinError."""
    if not messages:
        return []
    # A header name no message can already carry, so no line of a body is mistaken for it.
    marker = f"Mailer-Score-{secrets.token_hex(8)}"
    with tempfile.TemporaryDirectory(prefix="mailer-spamscore-") as scratch:
        folder = Path(scratch)
        paths = []
        for number, data in enumerate(messages):
            path = folder / f"{number:06d}.eml"
            path.write_bytes(data)
            paths.append(str(path))
        prefs = folder / "user_prefs"
        prefs.write_text("", encoding="utf-8")
        command = [
            spamassassin,
            "--local",
            "--nocreate-prefs",
            f"--prefspath={prefs}",
            "--cf=use_bayes 0",
            f"--cf=add_header all {marker} _SCORE_ _TESTSSCORES(,)_",
            *paths,
        ]
        try:
            # HOME in the scratch folder: whatever SpamAssassin saves per user stays out of the real one.
            done = subprocess.run(
                command,
                capture_output=True,
                timeout=_TIMEOUT_SECONDS,
                env={**os.environ, "HOME": scratch},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpamAssassinError(f"{spamassassin} could not run: {exc}") from exc
    if done.returncode != 0:
        raise SpamAssassinError(f"{spamassassin} failed (exit status {done.returncode}): {_first_line(done.stderr)}")
    scores = parse_scores(done.stdout.decode("utf-8", "replace"), marker)
    if len(scores) != len(messages):
        raise SpamAssassinError(
            f"{spamassassin} scored {len(scores)} of {len(messages)} messages: {_first_line(done.stderr)}"
        )
    return scores


def parse_scores(output: str, marker: str) -> list[Score]:
    """Every ``X-Spam-<marker>`` header in ``output`` (SpamAssassin's scored messages), in order.

    A header reads ``SCORE RULE=POINTS,RULE=POINTS`` (``none`` when no rule
    fired) and may be folded over several lines. Raises SpamAssassinError for
    a header that does not read that way.
    """
    prefix = f"X-Spam-{marker}:"
    lines = output.splitlines()
    scores = []
    for number, line in enumerate(lines):
        if not line.startswith(prefix):
            continue
        value = line[len(prefix) :]
        for continued in lines[number + 1 :]:
            if not continued[:1].isspace():
                break
            value += continued
        scores.append(_parse_value(value))
    return scores


def _parse_value(value: str) -> Score:
    total, _, tests = value.strip().partition(" ")
    rules = []
    try:
        points = float(total)
        for test in "".join(tests.split()).split(","):
            if test and test != "none":
                name, _, rule_points = test.partition("=")
                rules.append(Rule(name, float(rule_points)))
    except ValueError:
        raise SpamAssassinError(f"SpamAssassin's report is not 'SCORE RULE=POINTS,…': {value.strip()!r}") from None
    return Score(points, tuple(sorted(rules, key=lambda rule: (-rule.points, rule.name))))


def _first_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[0] if lines else "no message"
