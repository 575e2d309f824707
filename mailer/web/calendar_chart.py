"""The forecast calendar as bars, one per day: laid out here (pure), drawn as inline SVG by the admin view.

A day "stands out" when it sends at least three times what a typical other day (the median of the
other days that send anything) does: the day 4,000 anniversaries fall on is drawn in another colour and
labelled, so nobody has to read the numbers to see it coming.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import median

from mailer.planning.forecast import ForecastRow

WIDTH = 720
HEIGHT = 220
_TOP = 24  # room for the label above the tallest bar
_BOTTOM = 30  # room for the day numbers under the bars
STANDS_OUT = 3.0


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    send: int
    defer: int
    skip: int
    x: float
    y: float
    width: float
    height: float
    big: bool

    @property
    def label_y(self) -> float:
        return self.y - 6


def bars(rows: Iterable[ForecastRow], start: date, days: int) -> list[Bar]:
    """One bar per day from ``start`` (days with nothing to send get a bar of height 0), scaled to the biggest."""
    per_day: dict[date, list[int]] = {start + timedelta(days=i): [0, 0, 0] for i in range(days)}
    for row in rows:
        totals = per_day.setdefault(row.day, [0, 0, 0])
        totals[0] += row.send
        totals[1] += row.defer
        totals[2] += row.skip
    sending = [send for send, _, _ in per_day.values() if send]
    tallest = max(sending, default=0)
    slot = WIDTH / max(len(per_day), 1)
    room = HEIGHT - _TOP - _BOTTOM
    result = []
    for i, (day, (send, defer, skip)) in enumerate(sorted(per_day.items())):
        height = room * send / tallest if tallest else 0.0
        big = bool(send) and _stands_out(send, sending)
        result.append(
            Bar(day, send, defer, skip, x=i * slot + slot * 0.1, y=_TOP + room - height,
                width=slot * 0.8, height=height, big=big)
        )
    return result


def _stands_out(send: int, sending: list[int]) -> bool:
    others = list(sending)
    others.remove(send)
    return bool(others) and send >= STANDS_OUT * median(others)


def baseline() -> float:
    """The y of the bars' feet, where the day numbers hang."""
    return float(HEIGHT - _BOTTOM)
