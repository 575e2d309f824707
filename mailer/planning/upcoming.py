"""What is coming for one customer, in a support person's words (the admin view's timeline).

The passes are simulated by :func:`mailer.planning.outlook.outlook` (the forecast restricted to one
customer); this only says each occasion's outcome the way a person asks about it: "sent on 3 December
after deferral (frequency cap: …)", "opted out of campaign".
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from sqlmodel import Session

from mailer.config import Settings
from mailer.planning.outlook import outlook
from mailer.planning.policy import Verdict


class Upcoming(NamedTuple):
    """One coming occasion: its due date, campaign, and what the passes would decide and why."""

    due: date
    campaign: str
    verdict: str  # send, defer or skip (Verdict); defer only when still held back at the end of the span
    reason: str


def upcoming(session: Session, settings: Settings, customer_id: int, start: date, days: int) -> list[Upcoming]:
    """The occasions of ``customer_id`` that ``days`` daily passes from ``start`` would decide, by due date."""
    coming = []
    for u in outlook(session, settings, customer_id, start, days, settings.campaigns):
        reason = u.reason
        if u.verdict is Verdict.SEND:
            reason = f"sent on {u.decided_on}" + (f" after deferral ({u.waited})" if u.waited else "")
        coming.append(Upcoming(u.due, u.campaign, u.verdict.value, reason))
    return coming
