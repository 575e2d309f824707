"""A relay that takes no mail never looks healthy: `mailer run` and `mailer status` exit 1 with its words.

And the daemon says so once per incident, not once per pass.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.config import load_settings
from mailer.delivery.report import PassReport
from mailer.service.daemon import Daemon
from mailer.service.runs import Run
from mailer.store.tables import PassRun
from tests.service.test_service import ALL_WEEK, add_due_today, configure, invoke, statuses
from tests.support.smtpserver import SmtpServer


def starttls_transport(server: SmtpServer, ca: bool) -> str:
    lines = ['kind = "smtp"', f'host = "{server.host}"', f"port = {server.port}", 'security = "starttls"']
    if ca:
        lines.append(f'ca_file = "{server.ca_path}"')
    return "\n".join(lines)


def test_a_refused_certificate_makes_run_and_status_exit_1_with_the_reason_until_the_relay_works_again(
    project: Path, engine: Engine
) -> None:
    configure(project, policy=ALL_WEEK)
    add_due_today(engine, "ADA")
    with SmtpServer(tls="starttls") as server:
        configure(project, transport=starttls_transport(server, ca=False))

        ran = invoke(project, "run")

        assert ran.exit_code == 1, ran.output
        assert "error: relay unusable: TLS certificate refused" in ran.output
        assert statuses(engine) == {"ada@example.com": "queued"}
        with Session(engine) as session:
            run = session.execute(select(PassRun)).scalar_one()
        assert (run.status, run.error.startswith("relay unusable: TLS certificate refused")) == ("stopped", True)

        status = invoke(project, "status")
        assert status.exit_code == 1, status.output
        since = f"relay unusable since {run.started_at:%Y-%m-%d %H:%M} UTC: TLS certificate refused"
        assert since in status.output  # since the first run of the incident, not the latest
        assert "all well" not in status.output

        configure(project, transport=starttls_transport(server, ca=True))  # the admin fixes the CA
        after_the_backoff = (datetime.now(UTC) + timedelta(minutes=31)).isoformat()
        fixed = invoke(project, "run", "--now", after_the_backoff)
        assert fixed.exit_code == 0, fixed.output
        assert statuses(engine) == {"ada@example.com": "sent"}
        assert len(server.messages) == 1
    assert "relay unusable" not in invoke(project, "status").output


def test_a_relay_that_is_down_makes_run_exit_1(project: Path, engine: Engine) -> None:
    configure(project, policy=ALL_WEEK)
    add_due_today(engine, "ADA")
    with SmtpServer() as server:
        port = server.port
    configure(project, transport=f'kind = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\ntimeout = 5')

    ran = invoke(project, "run")

    assert ran.exit_code == 1, ran.output
    assert "error: relay unusable: ConnectionRefusedError" in ran.output


def test_a_pass_with_nothing_wrong_exits_0_and_one_with_a_failed_row_exits_1(project: Path, engine: Engine) -> None:
    configure(project, policy=ALL_WEEK)
    add_due_today(engine, "ADA")
    add_due_today(engine, "BOB")
    with SmtpServer(script={"bob@example.com": ["rcpt:550 5.1.1 no such user"]}) as server:
        configure(project, transport=f'kind = "smtp"\nhost = "{server.host}"\nport = {server.port}\nsecurity = "none"')
        assert invoke(project, "run").exit_code == 0  # a bounce is an answer, not a problem for cron
    add_due_today(engine, "JUERGEN")
    with Session(engine) as session:
        from mailer.store.tables import Customer

        juergen = session.execute(select(Customer).where(Customer.external_id == "JUERGEN")).scalar_one()
        juergen.email = "jürgen@example.org"
        session.add(juergen)
        session.commit()
    with SmtpServer(smtputf8=False) as server:
        configure(project, transport=f'kind = "smtp"\nhost = "{server.host}"\nport = {server.port}\nsecurity = "none"')
        ran = invoke(project, "run")
    assert ran.exit_code == 1, ran.output
    assert "error: 1 failed (`mailer log --status failed`)" in ran.output


def a_run(record_id: int, relay_down: str = "") -> Run:
    report = PassReport(relay_down=relay_down)
    if not relay_down:
        report.counts["sent"] = 1
    return Run(record_id=record_id, report=report)


def test_the_daemon_logs_a_relay_incident_once_and_its_end_once(
    project: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(engine, load_settings(project), sole_sender=True)
    caplog.set_level(logging.INFO, logger="mailer.service.daemon")

    for n, relay_down in enumerate(["", "TLS certificate refused: x", "TLS certificate refused: x", "", ""]):
        daemon._job("pass", lambda n=n, relay_down=relay_down: a_run(n, relay_down))  # type: ignore[misc]

    messages = [r.getMessage() for r in caplog.records]
    assert sum("relay unusable" in m for m in messages) == 1
    assert sum(m == "relay usable again" for m in messages) == 1
    assert sum(" done in " in m for m in messages) == 3  # the passes that could send say what they did


def test_status_names_the_start_of_the_incident_across_passes_and_sweeps(project: Path, engine: Engine) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    with Session(engine) as session:
        for n, (kind, status) in enumerate([("pass", "done"), ("retry", "stopped"), ("pass", "stopped"),
                                            ("retry", "stopped")]):
            session.add(PassRun(kind=kind, started_at=start + timedelta(minutes=30 * n), finished_at=start
                                + timedelta(minutes=30 * n + 1), status=status, host="h", pid=1,
                                error="" if status == "done" else "relay unusable: 421 4.3.2 closing"))
        session.commit()

    status = invoke(project, "status")

    assert status.exit_code == 1
    first = start + timedelta(minutes=30)
    assert f"relay unusable since {first:%Y-%m-%d %H:%M} UTC: 421 4.3.2 closing" in status.output


def test_a_run_with_nothing_to_send_neither_ends_a_relay_incident_nor_starts_one(project: Path, engine: Engine) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    runs = [("pass", "done", {"sent": 2}), ("retry", "stopped", {}), ("pass", "done", {}), ("pass", "done", {})]
    with Session(engine) as session:
        for n, (kind, status, counts) in enumerate(runs):
            session.add(PassRun(kind=kind, started_at=start + timedelta(minutes=30 * n),
                                finished_at=start + timedelta(minutes=30 * n + 1), status=status, counts=counts,
                                host="h", pid=1, error="relay unusable: 421 closing" if status == "stopped" else ""))
        session.commit()

    status = invoke(project, "status")

    assert status.exit_code == 1
    assert f"relay unusable since {start + timedelta(minutes=30):%Y-%m-%d %H:%M} UTC: 421 closing" in status.output


def test_the_daemon_keeps_an_incident_open_through_runs_that_did_not_reach_the_relay(
    project: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(engine, load_settings(project), sole_sender=True)
    caplog.set_level(logging.INFO, logger="mailer.daemon")
    idle = Run(record_id=9, report=PassReport())  # a sweep with nothing due never opens a connection

    daemon._job("pass", lambda: a_run(1, "421 closing"))
    daemon._job("retry", lambda: idle)
    assert not any(r.getMessage() == "relay usable again" for r in caplog.records)
    daemon._job("pass", lambda: a_run(2))
    assert [r.getMessage() for r in caplog.records].count("relay usable again") == 1
