"""One round of watching: tell ``[alerts]`` about a change of status, deliver due ``[[webhook]]`` events.

The daemon runs it every 30 seconds; ``mailer notify`` runs it once, for cron. A failing
receiver is logged and tried again next round; it never stops the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mailer.config import Settings
from mailer.service import alerts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Round:
    alert: alerts.Notice | None


def once(engine: Engine, settings: Settings, *, should_stop: Callable[[], bool] = lambda: False) -> Round:
    """Check the alert state once (and, from there, deliver events); store errors are logged, not raised."""
    try:
        notice = alerts.check(engine, settings)
    except SQLAlchemyError as exc:  # the store is away for a moment: the next round tries again
        log.error("alerts: cannot read the store: %s", str(exc).splitlines()[0])
        notice = None
    return Round(alert=notice)
