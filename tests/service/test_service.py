"""The unattended service: the daemon on its schedule, the SQLite lock, crash recovery, requeue, status."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import load_settings
from mailer.service.runs import lock_path
from mailer.store.tables import PassRun, SendLog, SendStatus
from tests.support.factories import add_customer
from tests.support.smtpserver import SmtpServer

PYTHON_MAILER = [sys.executable, "-c", "from mailer.cli import main; main()"]


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def configure(config: Path, **sections: str) -> None:
    """Replace whole sections of mailer.toml (``transport='kind = "smtp"...'``)."""
    text = config.read_text()
    for name, body in sections.items():
        text = re.sub(rf"^\[{name}\]\n(?:(?!\[).*\n)*", f"[{name}]\n{body.strip()}\n\n", text, flags=re.M)
    config.write_text(text)


def noon_zone_today() -> tuple[str, date]:
    """A fixed-offset zone where it is about noon now, and the local date there: inside any send window."""
    now = datetime.now(UTC)
    offset = 12 - now.hour  # -11 … +12
    zone = f"Etc/GMT{'-' if offset >= 0 else '+'}{abs(offset)}"  # Etc/GMT-3 is UTC+3
    return zone, (now + timedelta(hours=offset)).date()


def add_due_today(engine: Engine, external_id: str) -> int:
    """A customer whose 4th anniversary is today in their own zone (now), at about local noon."""
    zone, today = noon_zone_today()
    return add_customer(engine, external_id, since=today.replace(year=today.year - 4), timezone=zone)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.execute(select(SendLog.to_address, SendLog.status)).all()
    return dict(rows)


SCHEDULE_EVERY_MINUTE = 'passes = ["* * * * *"]\nretry_every = "1m"'
ALL_WEEK = """
min_days_between = 7
window_start = "09:00"
window_end = "17:00"
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
catch_up_days = 3
"""


def smtp_transport(server: SmtpServer, timeout: int = 60) -> str:
    return f'kind = "smtp"\nhost = "{server.host}"\nport = {server.port}\nsecurity = "none"\ntimeout = {timeout}'


@pytest.mark.slow
def test_daemon_runs_the_catch_up_pass_then_the_scheduled_one_and_stops_cleanly_on_sigterm(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    configure(project, schedule=SCHEDULE_EVERY_MINUTE, policy=ALL_WEEK)
    add_due_today(engine, "EARLY")
    outbox = project.parent / "outbox" / "new"
    log = tmp_path / "daemon.log"
    with log.open("wb") as stderr:
        daemon = subprocess.Popen(
            [*PYTHON_MAILER, "--config", str(project), "--log-json", "daemon"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        wait_until(lambda: statuses(engine).get("early@example.com") == "sent", 60, "the catch-up pass")
        refused = invoke(project, "run")  # a second sender while the daemon runs
        assert refused.exit_code == 2
        assert "in use by mailer daemon (pid" in refused.output and "not starting a second sender" in refused.output

        add_due_today(engine, "LATER")  # only a scheduled pass (every minute) can find this one
        wait_until(lambda: statuses(engine).get("later@example.com") == "sent", 150, "the scheduled pass")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    names = [e.get("event") for e in events]
    assert names[0] == "daemon_started" and names[-1] == "daemon_stopped"
    # SIGTERM may land while a scheduled pass is running: that pass finishes, nothing new starts.
    assert set(names[names.index("stopping") + 1 : -1]) <= {"pass_done"}, names
    assert names.count("pass_done") >= 2
    # Under load APScheduler may warn that a minute's run was skipped or coalesced; that is its job, not an error.
    assert not [e for e in events if e["level"] not in ("info", "warning")], events
    assert statuses(engine) == {"early@example.com": "sent", "later@example.com": "sent"}
    assert len(list(outbox.glob("*.eml"))) == 2
    with Session(engine) as session:
        runs = session.execute(select(PassRun).where(PassRun.kind == "pass")).scalars().all()
    assert len(runs) >= 2 and {r.status for r in runs} == {"done"}
    assert [r.pid for r in runs] == [daemon.pid] * len(runs)


def start_run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*PYTHON_MAILER, "--config", str(config), "run"],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
def test_two_runs_at_once_on_sqlite_one_sends_the_other_refuses_and_nothing_goes_twice(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    configure(project, policy=ALL_WEEK)
    for n in range(5):
        add_due_today(engine, f"C{n}")
    with SmtpServer(script={"c0@example.com": ["stall:5"]}) as server:
        configure(project, transport=smtp_transport(server))
        first = start_run(project, tmp_path / "first.log")
        try:
            wait_until(lambda: server.stalling == 1, 60, "the first run to be inside an SMTP transaction")
            second = invoke(project, "run")
            assert first.wait(timeout=60) == 0, (tmp_path / "first.log").read_text()
        finally:
            if first.poll() is None:
                first.kill()
        assert second.exit_code == 2
        assert second.output.strip() == (
            f"error: {lock_path(load_settings(project).store.url)}: the store is in use by "
            f"mailer run (pid {first.pid} on {os.uname().nodename}); not starting a second sender"
        )
        received = sorted(m.rcpt_tos[0] for m in server.messages)
    assert received == [f"c{n}@example.com" for n in range(5)]
    assert set(statuses(engine).values()) == {"sent"}
    assert "pass: sent 5" in (tmp_path / "first.log").read_text()


@pytest.mark.slow
def test_a_killed_run_leaves_unknown_never_resent_until_requeued_then_sent_once(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    configure(project, policy=ALL_WEEK)
    victim = add_due_today(engine, "VICTIM")
    add_due_today(engine, "OTHER")
    with SmtpServer(script={"victim@example.com": ["stall:120"]}) as server:
        configure(project, transport=smtp_transport(server, timeout=300))
        killed = start_run(project, tmp_path / "killed.log")
        wait_until(lambda: server.stalling == 1, 60, "the run to be inside the SMTP transaction")
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert statuses(engine)["victim@example.com"] == SendStatus.SENDING  # committed before SMTP

        again = invoke(project, "run")
        assert again.exit_code == 1, again.output  # cron hears that a human is needed
        assert "1 interrupted row(s) marked unknown" in again.output
        assert "error: 1 unknown (`mailer log --status unknown`)" in again.output
        assert statuses(engine) == {"victim@example.com": "unknown", "other@example.com": "sent"}
        assert invoke(project, "retry").output.strip() == "retry sweep: nothing due"  # unknown is never resent

        unknown = invoke(project, "log", "--status", "unknown", "--format", "json")
        [row] = json.loads(unknown.output)
        assert (row["id"], row["customer"]) == (_row_id(engine, victim), "VICTIM")
        status = invoke(project, "status")
        assert status.exit_code == 1
        assert "1 unknown row(s)" in status.output and f"mailer requeue {row['id']}" in status.output

        requeued = invoke(project, "requeue", str(row["id"]))
        assert requeued.exit_code == 0, requeued.output
        assert f"{row['id']}: unknown -> queued" in requeued.output
        swept = invoke(project, "retry")
        assert swept.exit_code == 0, swept.output
        assert "sent 1" in swept.output
        delivered = sorted(m.rcpt_tos[0] for m in server.messages)
    assert delivered == ["other@example.com", "victim@example.com"]  # each once
    assert set(statuses(engine).values()) == {"sent"}
    assert invoke(project, "status").exit_code == 0


def _row_id(engine: Engine, customer_id: int) -> int:
    with Session(engine) as session:
        return session.execute(select(SendLog.id).where(SendLog.customer_id == customer_id)).scalar_one()


@pytest.mark.slow
def test_sigterm_during_a_send_finishes_that_message_records_it_and_exits_0(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    configure(project, policy=ALL_WEEK)
    for n in range(4):
        add_due_today(engine, f"C{n}")
    with SmtpServer(script=lambda rcpt: ["stall:3"]) as server:
        configure(project, transport=smtp_transport(server))
        log = tmp_path / "daemon.log"
        with log.open("wb") as stderr:
            daemon = subprocess.Popen(
                [*PYTHON_MAILER, "--config", str(project), "daemon"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )
        try:
            wait_until(lambda: server.stalling == 1, 60, "the catch-up pass to be inside an SMTP transaction")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0, log.read_text()
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        delivered = [m.rcpt_tos[0] for m in server.messages]
    outcome = statuses(engine)
    assert len(delivered) == 1 and outcome[delivered[0]] == "sent"  # the message in flight went out, recorded
    assert sorted(outcome.values()) == ["queued", "queued", "queued", "sent"]  # the rest wait, nothing unknown
    assert "SIGTERM: finishing the message in flight, then stopping" in log.read_text()
