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

from mailer.config import ConfigError, Settings
from mailer.service import alerts, events

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Round:
    alert: alerts.Notice | None
    delivered: dict[str, int]  # events delivered, per [[webhook]]


def once(engine: Engine, settings: Settings, *, should_stop: Callable[[], bool] = lambda: False) -> Round:
    """Check the alert state once, then deliver due events; store errors are logged, not raised."""
    notice = None
    delivered: dict[str, int] = {}
    try:
        notice = alerts.check(engine, settings)
        delivered = events.deliver(engine, settings, should_stop=should_stop)
    except SQLAlchemyError as exc:  # the store is away for a moment: the next round tries again
        log.error("watching: cannot use the store: %s", str(exc).splitlines()[0])
    except ConfigError as exc:  # a webhook's URL or secret cannot be read: said every round until fixed
        log.error("watching: %s", exc)
    return Round(alert=notice, delivered=delivered)
