"""What whoever looks after the server asks: ``mailer stats`` and ``mailer status``.

The store is read in :func:`gather`; whether something needs a human is the
pure :func:`problems`, so monitoring rules are tested with plain values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session, col

from mailer.delivery.report import relay_answered
from mailer.store.tables import PassRun, SendLog, SendStatus

STATS_COLUMNS = ("sent", "deferred", "skipped", "failed", "bounced", "unknown", "queued", "sending")
RECENT = timedelta(days=1)
# How many recent runs are read to find where a relay incident began.
INCIDENT_LOOKBACK = 1000
# How long after its scheduled time a pass may be missing before status calls it overdue.
PASS_OVERDUE = timedelta(hours=1)
# How long past its time a queued row may wait before status says the retry sweep is not running.
SWEEP_OVERDUE = timedelta(hours=1)


def stats(session: Session, since: datetime | None) -> list[tuple[object, ...]]:
    """Per campaign (and a total), how many send-log rows are in each status; test sends left out."""
    query = (
        select(col(SendLog.campaign), col(SendLog.status), func.count())
        .where(col(SendLog.is_test).is_(False))
        .group_by(col(SendLog.campaign), col(SendLog.status))
    )
    if since is not None:
        query = query.where(col(SendLog.updated_at) >= since)
    counts: dict[str, dict[str, int]] = {}
    for campaign, status, count in session.execute(query).all():
        counts.setdefault(campaign, {})[status] = count
    per_campaign = {campaign: [counts[campaign].get(s, 0) for s in STATS_COLUMNS] for campaign in sorted(counts)}
    totals = [sum(values[i] for values in per_campaign.values()) for i in range(len(STATS_COLUMNS))]
    return [(campaign, *values) for campaign, values in per_campaign.items()] + [("total", *totals)]


@dataclass(frozen=True)
class Facts:
    """What status reports, read from the store at ``now``."""

    now: datetime
    last_pass: PassRun | None
    last_sweep: PassRun | None
    queue: dict[str, int]
    unknown_ids: list[int]
    failed_recently: int
    bounced_recently: int
    oldest_retry: SendLog | None
    overdue_queued: int
    next_pass: datetime
    next_pass_after_last: datetime | None = None
    relay_down: PassRun | None = None  # the latest run, when it could not use the relay
    relay_down_since: datetime | None = None  # when the first of the runs that could not use it started
    problems: list[str] = field(default_factory=list)


def gather(session: Session, now: datetime, next_pass_after: Callable[[datetime], datetime]) -> Facts:
    """Read the store; ``next_pass_after(t)`` is the schedule's next pass after instant t."""
    last_pass = _last_run(session, "pass")
    queue = dict(
        session.execute(select(col(SendLog.status), func.count()).group_by(col(SendLog.status))).all()
    )
    unknown = session.execute(
        select(col(SendLog.id)).where(col(SendLog.status) == SendStatus.UNKNOWN).order_by(col(SendLog.id))
    ).scalars().all()
    recent = now - RECENT
    oldest_retry = session.execute(
        select(SendLog)
        .where(col(SendLog.status) == SendStatus.QUEUED, col(SendLog.attempts) > 0)
        .order_by(col(SendLog.created_at), col(SendLog.id))
        .limit(1)
    ).scalar_one_or_none()
    overdue = session.execute(
        select(func.count()).where(
            col(SendLog.status) == SendStatus.QUEUED, col(SendLog.next_attempt_at) < now - SWEEP_OVERDUE
        )
    ).scalar_one()
    relay_down, since = _relay_incident(session)
    facts = Facts(
        now=now,
        last_pass=last_pass,
        last_sweep=_last_run(session, "retry"),
        queue=queue,
        unknown_ids=list(unknown),
        failed_recently=_count_since(session, SendStatus.FAILED, recent),
        bounced_recently=_count_since(session, SendStatus.BOUNCED, recent),
        oldest_retry=oldest_retry,
        overdue_queued=overdue,
        next_pass=next_pass_after(now),
        next_pass_after_last=next_pass_after(last_pass.started_at) if last_pass else None,
        relay_down=relay_down,
        relay_down_since=since,
    )
    facts.problems.extend(problems(facts))
    return facts


def _last_run(session: Session, kind: str) -> PassRun | None:
    return session.execute(
        select(PassRun).where(col(PassRun.kind) == kind).order_by(col(PassRun.started_at).desc()).limit(1)
    ).scalar_one_or_none()


def _relay_incident(session: Session) -> tuple[PassRun | None, datetime | None]:
    """The latest run that found the relay unusable, if no run has reached it since; and when the incident began.

    An incident is the series of ``stopped`` runs (passes and sweeps alike) since the last run
    the relay answered. Runs with nothing to send, and runs that failed before sending, say
    nothing about the relay either way: they neither end an incident nor start one.
    """
    recent = session.execute(
        select(PassRun).where(col(PassRun.status).in_(("done", "stopped"))).order_by(col(PassRun.started_at).desc())
        .limit(INCIDENT_LOOKBACK)
    ).scalars()
    latest: PassRun | None = None
    since: datetime | None = None
    for run in recent:
        if run.status == "stopped":
            latest = latest or run
            since = run.started_at
        elif relay_answered(run.counts):
            break
    return latest, since


def _count_since(session: Session, status: str, since: datetime) -> int:
    query = select(func.count()).where(col(SendLog.status) == status, col(SendLog.updated_at) >= since)
    return int(session.execute(query).scalar_one())


def problems(facts: Facts) -> list[str]:
    """Everything that needs a human, one line each; empty when all is well."""
    found: list[str] = []
    if facts.relay_down is not None and facts.relay_down_since is not None:
        reason = facts.relay_down.error.removeprefix("relay unusable: ")
        since = _when(facts.relay_down_since)
        found.append(f"relay unusable since {since}: {reason}; no mail goes out until it is fixed")
    if facts.unknown_ids:
        ids = " ".join(map(str, facts.unknown_ids[:20])) + (" …" if len(facts.unknown_ids) > 20 else "")
        found.append(
            f"{len(facts.unknown_ids)} unknown row(s) (interrupted while sending: maybe delivered): "
            f"check them (`mailer log --status unknown`), then `mailer requeue {ids}` or leave them"
        )
    if facts.failed_recently:
        found.append(f"{facts.failed_recently} failed in the last 24 h (`mailer log --status failed`)")
    if facts.bounced_recently:
        found.append(f"{facts.bounced_recently} bounced in the last 24 h (`mailer log --status bounced`)")
    last = facts.last_pass
    if last is None:
        found.append("no pass has run yet: start `mailer daemon` (or the cron jobs)")
    elif last.status == "failed":
        found.append(f"the last pass (#{last.id}) failed: {last.error}")
    elif facts.next_pass_after_last is not None and facts.next_pass_after_last + PASS_OVERDUE < facts.now:
        found.append(
            f"no pass since {_when(last.started_at)} (one was due at {_when(facts.next_pass_after_last)}): "
            "is the daemon (or cron) running?"
        )
    if facts.overdue_queued:
        found.append(f"{facts.overdue_queued} queued row(s) overdue by more than an hour: is the retry sweep running?")
    return found


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def describe_run(run: PassRun | None) -> str:
    if run is None:
        return "none yet"
    where = f"on {run.host} (pid {run.pid})"
    if run.status == "running":
        return f"#{run.id} running since {_when(run.started_at)} {where}"
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()) if v) or "nothing to do"
    outcome = f"{run.status}: {run.error}" if run.status in ("failed", "stopped") else counts
    return f"#{run.id} {_when(run.started_at)}, {took:.1f}s {where}: {outcome}"


def describe_queue(queue: dict[str, int]) -> str:
    order = [*STATS_COLUMNS, *sorted(set(queue) - set(STATS_COLUMNS))]
    return ", ".join(f"{status} {queue.get(status, 0)}" for status in order)


def describe_retry(row: SendLog | None) -> str:
    if row is None:
        return "none"
    next_at = _when(row.next_attempt_at) if row.next_attempt_at else "not scheduled"
    return f"#{row.id} to {row.to_address}: {row.attempts} attempt(s) since {_when(row.created_at)}, next {next_at}"


def as_json(facts: Facts) -> dict[str, object]:
    def run(r: PassRun | None) -> dict[str, object] | None:
        return None if r is None else r.model_dump(mode="json")

    return {
        "ok": not facts.problems,
        "problems": facts.problems,
        "last_pass": run(facts.last_pass),
        "last_sweep": run(facts.last_sweep),
        "next_pass": facts.next_pass.isoformat(),
        "queue": facts.queue,
        "unknown_ids": facts.unknown_ids,
        "oldest_retry": None if facts.oldest_retry is None else facts.oldest_retry.id,
        # The same numbers as /metrics (mailer/service/metrics.py), for scripts that read this instead.
        "oldest_retry_age_seconds": oldest_retry_age(facts),
        "overdue_queued": facts.overdue_queued,
        "relay_down": facts.relay_down is not None,
    }


def oldest_retry_age(facts: Facts) -> float:
    """Seconds since the oldest queued row that has been tried before was recorded; 0 when there is none."""
    row = facts.oldest_retry
    return max(0.0, (facts.now - row.created_at).total_seconds()) if row else 0.0


def stats_headers() -> Sequence[str]:
    return ("campaign", *STATS_COLUMNS)
