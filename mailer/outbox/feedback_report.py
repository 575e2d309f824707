"""``mailer feedback``: the answers, and how customers feel per campaign and month (reads only).

A month is the month the question was *sent* (the message's ``sent_at``), so a response
rate compares like with like: of the messages that asked in November, how many were
answered (whenever the answer came). :func:`summarise` is pure; the queries feed it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from mailer.store.tables import Customer, Feedback, SendLog, SendStatus


@dataclass(frozen=True, slots=True)
class Asked:
    """One message that asked, as the summary sees it."""

    campaign: str
    sent_at: datetime
    answer: int | None  # None: not answered
    scale: int | None


@dataclass
class Summary:
    campaign: str
    period: str  # "2026-11", or "total"
    sent: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    scale: int = 0  # the largest scale answered on (answers are shown 1…scale)

    @property
    def responses(self) -> int:
        return sum(self.answers.values())

    @property
    def rate(self) -> float | None:
        return self.responses / self.sent if self.sent else None

    @property
    def average(self) -> float | None:
        return sum(a * n for a, n in self.answers.items()) / self.responses if self.responses else None

    def distribution(self) -> str:
        """``1:0 2:1 3:4 4:9 5:12``: how many gave each answer."""
        return " ".join(f"{a}:{self.answers[a]}" for a in range(1, self.scale + 1))


def summarise(asked: Iterable[Asked]) -> list[Summary]:
    """PURE: per campaign and month, then per campaign ("total"), in campaign and month order."""
    found: dict[tuple[str, str], Summary] = {}
    for item in asked:
        for period in (f"{item.sent_at:%Y-%m}", "total"):
            summary = found.setdefault((item.campaign, period), Summary(item.campaign, period))
            summary.sent += 1
            if item.answer is not None:
                summary.answers[item.answer] += 1
                summary.scale = max(summary.scale, item.scale or 0)
    return [found[key] for key in sorted(found, key=lambda k: (k[0], k[1] == "total", k[1]))]


def asked_messages(
    session: Session, campaigns: Sequence[str], since: datetime | None = None
) -> list[Asked]:
    """Every delivered message of ``campaigns`` (those that ask), with its answer if any."""
    query = (
        select(col(SendLog.campaign), col(SendLog.sent_at), col(Feedback.answer), col(Feedback.scale))
        .outerjoin(Feedback, col(Feedback.send_log_id) == col(SendLog.id))
        .where(
            col(SendLog.campaign).in_(sorted(campaigns)),
            col(SendLog.status) == SendStatus.SENT,
            col(SendLog.is_test).is_(False),
        )
    )
    if since is not None:
        query = query.where(col(SendLog.sent_at) >= since)
    return [Asked(*row) for row in session.execute(query) if row[1] is not None]


def asking_campaigns(session: Session, configured: Iterable[str]) -> list[str]:
    """The campaigns that ask now (``configured``) or did once (they have answers)."""
    answered = session.execute(select(col(Feedback.campaign)).distinct()).scalars()
    return sorted(set(configured) | set(answered))


LISTING_HEADERS = ["id", "answered", "customer", "campaign", "answer", "comment", "source", "status"]


def listing(session: Session, since: datetime | None = None, campaign: str | None = None) -> list[tuple[object, ...]]:
    """The answers, newest first; status ``waiting`` while an unhappy one waits for a person."""
    query = (
        select(
            col(Feedback.id), col(Feedback.answered_at), col(Customer.external_id), col(Feedback.campaign),
            col(Feedback.answer), col(Feedback.label), col(Feedback.scale), col(Feedback.comment),
            col(Feedback.source), col(Feedback.unhappy_since), col(Feedback.resolved_at), col(Feedback.notices),
        )
        .join(Customer, col(Customer.id) == col(Feedback.customer_id))
        .order_by(col(Feedback.answered_at).desc(), col(Feedback.id).desc())
    )
    if since is not None:
        query = query.where(col(Feedback.answered_at) >= since)
    if campaign is not None:
        query = query.where(col(Feedback.campaign) == campaign)
    rows: list[tuple[object, ...]] = []
    for fid, at, who, name, answer, label, scale, comment, source, waiting, resolved, notices in session.execute(query):
        shown = f"{answer}/{scale}" if label == str(answer) else f"{answer}/{scale} {label}"
        status = "waiting" if waiting else f"handled {resolved:%Y-%m-%d}" if resolved else "notified" if notices else ""
        rows.append((fid, at, who, name, shown, comment, source, status))
    return rows


def response_rates(session: Session, configured: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Per asking campaign: (messages delivered, answered) over all time, for ``mailer stats``."""
    campaigns = asking_campaigns(session, configured)
    return {s.campaign: (s.sent, s.responses) for s in summarise(asked_messages(session, campaigns))
            if s.period == "total"}


@dataclass(frozen=True, slots=True)
class Waiting:
    """A customer whose appreciation waits for a person (``mailer plan`` lists them)."""

    feedback_id: int
    external_id: str
    since: datetime
    answer: str


def waiting(session: Session) -> list[Waiting]:
    """Unhappy answers nobody has marked handled yet, oldest first."""
    query = (
        select(col(Feedback.id), col(Customer.external_id), col(Feedback.unhappy_since), col(Feedback.answer),
               col(Feedback.scale))
        .join(Customer, col(Customer.id) == col(Feedback.customer_id))
        .where(col(Feedback.unhappy_since).is_not(None))
        .order_by(col(Feedback.unhappy_since), col(Feedback.id))
    )
    return [Waiting(fid, who, since, f"{answer}/{scale}") for fid, who, since, answer, scale in session.execute(query)]
