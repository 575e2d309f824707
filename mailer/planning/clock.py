"""The pass clock: the instant a pass runs at, and whether it stands for a whole calendar day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailer.planning import dates
from mailer.planning.occasions import noon
from mailer.planning.policy import PassMoment


@dataclass(frozen=True, slots=True)
class PassClock:
    """The time a pass stands for: an instant, or a whole calendar day.

    ``day`` set (``mailer run --date``, ``mailer plan``, ``mailer simulate``):
    every customer's local date is ``day``, the send window is open on the
    configured weekdays, every time rule (frequency cap, catch-up, spells,
    delays) is applied as of ``day``, and a customer emailed by the pass
    counts as emailed at noon of ``day`` in their zone. Otherwise local dates
    and windows follow ``now``. ``now`` is also when the pass records and
    delivers: the real time unless given (``given``: the pass then moves on
    from it); ``replay`` (a simulation on a throw-away store, where nothing
    real happens) delivers at ``now`` itself.
    """

    now: datetime
    day: date | None = None
    replay: bool = False
    given: bool = False  # ``now`` was given (`--now`), not read from the real clock

    @classmethod
    def at(cls, now: datetime | None = None) -> PassClock:
        return cls(now=(now or datetime.now(UTC)).astimezone(UTC), given=now is not None)

    @classmethod
    def on(cls, day: date, now: datetime | None = None) -> PassClock:
        return cls(now=(now or datetime.now(UTC)).astimezone(UTC), day=day, given=now is not None)

    @classmethod
    def replayed(cls, day: date) -> PassClock:
        """A pass for ``day`` on a throw-away store: recorded and delivered at noon UTC of ``day``."""
        return cls(now=datetime.combine(day, time(12), UTC), day=day, replay=True)

    def moment_for(self, zone: str) -> PassMoment:
        if self.day is not None:
            return PassMoment(today=self.day, local_now=None, window_open=True, weekday_only=True)
        local = self.now.astimezone(ZoneInfo(zone))
        return PassMoment(today=local.date(), local_now=local, window_open=False)

    def emailed_at(self, zone: str) -> datetime:
        """When a customer in ``zone`` emailed by this pass counts as emailed (the frequency cap counts from it)."""
        return noon(self.day, zone) if self.day is not None else self.now

    def local_dates(self, lookback: int) -> list[date]:
        """Every local date this pass stands for somewhere, and the ``lookback`` days before them."""
        if self.day is not None:
            return [self.day - timedelta(days=i) for i in range(lookback + 1)]
        return dates.local_dates_span(self.now, lookback)

    def planned_through(self) -> date:
        """The latest date that, after this pass, has been planned in every time zone."""
        if self.day is not None:
            return self.day
        return min(dates.local_dates_span(self.now, 0))
