"""``mailer daemon``: APScheduler wiring, signals and the single-instance rule.

The pass runs on the ``[schedule] passes`` crontab expressions, read in the
sender's time zone (the business's clock, DST included: "0 9 * * *" means nine
in the morning there all year); each pass applies every recipient's own send
window, so the default hourly pass reaches every zone at a sensible hour. A
retry sweep every ``[schedule] retry_every`` delivers what is due again. At
start-up a catch-up pass runs at once (rows a crash left ``sending`` become
``unknown`` first, never resent on their own). With an ``[inbox]``, returned mail is read
at start-up and every ``[schedule] inbox_every``.

APScheduler 3.x keeps its jobs in memory: it only wakes this process. Who
sends what is decided by the store (conditional claims; on SQLite a lock file
keeps a second daemon out, on PostgreSQL several daemons share the work).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from mailer import logs
from mailer.config import Settings
from mailer.delivery.report import relay_answered
from mailer.planning.clock import PassClock
from mailer.service import inbox as reading
from mailer.service import runs, watching
from mailer.service import sync as syncing
from mailer.service.schedule import next_pass, pass_triggers

__all__ = ["Daemon", "next_pass", "pass_triggers"]  # next_pass: kept importable from here

# A run that starts late (the machine was suspended, the previous pass ran long) still runs
# within this grace; APScheduler's default of 1 s would silently skip it. Several missed
# runs of one job collapse into one (coalesce), and one job never overlaps itself.
MISFIRE_GRACE = timedelta(hours=6)

log = logs.events("mailer.service.daemon")
# How often the daemon checks for an alert to send and events to deliver.
WATCH_EVERY = timedelta(seconds=30)


class Daemon:
    """Runs passes and sweeps on the schedule until SIGTERM/SIGINT; one job at a time."""

    def __init__(self, engine: Engine, settings: Settings, *, sole_sender: bool) -> None:
        self.engine = engine
        self.settings = settings
        self.sole_sender = sole_sender
        self.stop = runs.StopFlag()
        self._busy = threading.Lock()
        self._relay_down: str | None = None  # what the relay said, while it cannot take mail
        self.scheduler = BlockingScheduler(
            timezone=ZoneInfo(settings.sender.timezone),
            # "watch" (alerts, events out) has its own thread: a long pass must not hold back either.
            executors={"default": ThreadPoolExecutor(max_workers=1), "watch": ThreadPoolExecutor(max_workers=1)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(MISFIRE_GRACE.total_seconds()),
            },
        )

    def run(self) -> None:
        """Block until a signal; returns after the message in flight is finished and committed."""
        for number, trigger in enumerate(pass_triggers(self.settings)):
            self.scheduler.add_job(self.pass_job, trigger, id=f"pass-{number}", name=f"pass ({trigger})")
        self.scheduler.add_job(
            self.sweep_job, IntervalTrigger(seconds=self.settings.schedule.retry_every.total_seconds()),
            id="retry", name="retry sweep",
        )
        self.scheduler.add_job(self.pass_job, DateTrigger(), id="catch-up", name="catch-up pass at start-up")
        if self.settings.sources:
            zone = ZoneInfo(self.settings.sender.timezone)
            for number, expression in enumerate(self.settings.schedule.sync):
                self.scheduler.add_job(self.sync_job, CronTrigger.from_crontab(expression, timezone=zone),
                                       id=f"sync-{number}", name=f"sync ({expression})")
        if self.settings.inbox is not None:
            self.scheduler.add_job(
                self.inbox_job, IntervalTrigger(seconds=self.settings.schedule.inbox_every.total_seconds()),
                id="inbox", name="inbox", next_run_time=datetime.now(UTC),
            )
        self.scheduler.add_job(
            self.watch_job, IntervalTrigger(seconds=WATCH_EVERY.total_seconds()), id="watch",
            name="alerts and events out", executor="watch", next_run_time=datetime.now(UTC),
        )
        with self.stop.on_signals(self._stopping):
            log.info(
                "daemon started: passes %s (%s), retry sweep every %s, %s, %s",
                ", ".join(repr(e) for e in self.settings.schedule.passes), self.settings.sender.timezone,
                self.settings.schedule.retry_every,
                f"inbox every {self.settings.schedule.inbox_every}" if self.settings.inbox else "no [inbox]",
                "sole sender (SQLite lock held)" if self.sole_sender else "sharing the store with other workers",
                extra={"fields": {"event": "daemon_started", "passes": list(self.settings.schedule.passes),
                                  "timezone": self.settings.sender.timezone}},
            )
            self.scheduler.start()
            with self._busy:  # the job in flight, if any, has noticed the flag: wait for its commit
                pass
        log.info("daemon stopped (%s)", self.stop.signal_name, extra={"fields": {"event": "daemon_stopped"}})

    def _stopping(self, signal_name: str) -> None:
        log.info(
            "%s: finishing the message in flight, then stopping", signal_name,
            extra={"fields": {"event": "stopping", "signal": signal_name}},
        )
        self.scheduler.shutdown(wait=False)

    def pass_job(self) -> None:
        def sync_then_pass() -> runs.Run | None:
            if not self.settings.schedule.sync:  # no sync schedule of its own: the sources run before each pass
                self.sync_sources()
            return runs.scheduled_pass(self.engine, self.settings, PassClock.at(), should_stop=self.stop)

        self._job("pass", sync_then_pass)

    def sync_job(self) -> None:
        """``[schedule] sync``: the sources on their own schedule, one job at a time like the others."""
        with self._busy:
            if not self.stop():
                self.sync_sources()

    def sync_sources(self) -> None:
        """Run every [[source]]; a failing one is logged and the pass plans on the last good data."""
        for outcome in syncing.sync(self.engine, self.settings):
            level = logging.ERROR if outcome.failed else logging.INFO
            log.log(
                level, "source %s", outcome.summary(),
                extra={"fields": {"event": "sync_failed" if outcome.failed else "sync_done", "source": outcome.name,
                                  "counts": outcome.counts(), "error": outcome.error}},
            )

    def sweep_job(self) -> None:
        self._job("retry", lambda: runs.retry_sweep(self.engine, self.settings, should_stop=self.stop))

    def watch_job(self) -> None:
        """Tell [alerts] about a change of status and deliver due [[webhook]] events (mailer/service/watching.py)."""
        if not self.stop():
            watching.once(self.engine, self.settings, should_stop=self.stop)

    def inbox_job(self) -> None:
        """Read the [inbox] once (mailer/service/inbox.py); a failure is logged and the next run tries again."""
        inbox = self.settings.inbox
        assert inbox is not None  # the job is only scheduled with an [inbox]
        with self._busy:
            if self.stop():
                return
            try:
                report = reading.process(self.engine, reading.mailbox_for(inbox), self.settings)
            except Exception as exc:  # the daemon outlives an unreadable inbox: logged, tried again on schedule
                log.error(
                    "inbox failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG),
                    extra={"fields": {"event": "inbox_failed", "error": str(exc)}},
                )
                return
        log.info(
            "inbox read: %s", report.summary(),
            extra={"fields": {"event": "inbox_done", "counts": {str(k): n for k, n in report.counts.items()}}},
        )

    def _relay_incident(self, run: runs.Run) -> bool:
        """Say once that the relay cannot take mail, and once that it can again; True while it cannot.

        Every pass and sweep tries the relay again, but a log line per try would
        bury the one that matters: the first, with the relay's own words.
        """
        down = run.report.relay_down
        if down and self._relay_down is None:
            log.error(
                "relay unusable: %s; no mail goes out until it is fixed (every pass and sweep tries again)", down,
                extra={"fields": {"event": "relay_down", "run": run.record_id, "reply": down}},
            )
            self._relay_down = down
        elif self._relay_down is not None and relay_answered(run.report.counts):
            # Only a run the relay answered ends the incident: one with nothing to send never tried it.
            log.info("relay usable again", extra={"fields": {"event": "relay_up", "run": run.record_id}})
            self._relay_down = None
        return bool(down)

    def _job(self, kind: str, work: Callable[[], runs.Run | None]) -> None:
        with self._busy:
            if self.stop():
                return
            try:
                run = work()
            except Exception as exc:  # the daemon outlives a failed run: logged, recorded, retried by the schedule
                log.error(
                    "%s failed: %s", kind, exc, exc_info=log.isEnabledFor(logging.DEBUG),
                    extra={"fields": {"event": f"{kind}_failed", "error": str(exc)}},
                )
                return
        if run is None:
            return  # an idle sweep: nothing to say
        label = "pass" if kind == "pass" else "retry sweep"
        if self._relay_incident(run):
            return
        log.info(
            "%s %d done in %.1fs: %s", label, run.record_id, run.seconds, run.summary(),
            extra={"fields": {"event": f"{kind}_done", "run": run.record_id, "seconds": round(run.seconds, 3),
                              "counts": dict(run.report.counts)}},
        )
