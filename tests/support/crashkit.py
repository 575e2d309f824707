"""Helpers for tests that run ``mailer`` as real processes: projects on disk, many customers, a SMTP sink."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.service.project import init_project
from mailer.store.tables import Customer, SendLog, SendStatus, month_day

MAILER = Path(sys.executable).with_name("mailer")
DAY = date(2026, 11, 23)


def sink_project(directory: Path, store_url: str, smtp_port: int, **transport: object) -> Path:
    """A `mailer init` project whose store is ``store_url`` and whose transport is the sink on ``smtp_port``.

    The faster css-inline inliner keeps big subprocess tests short; the messages are the same kind.
    """
    config = init_project(directory, DAY, customers=1)
    settings = {"kind": "smtp", "host": "127.0.0.1", "port": smtp_port, "security": "none", "timeout": 10, **transport}
    lines = "\n".join(f"{key} = {_toml(value)}" for key, value in settings.items())
    text = config.read_text(encoding="utf-8")
    text = re.sub(r"\[transport\]\n.*?\n\[", f"[transport]\n{lines}\n\n[", text, count=1, flags=re.S)
    text = re.sub(r'^url = "sqlite:///mailer.db".*$', f'url = "{store_url}"', text, count=1, flags=re.M)
    text = re.sub(r'^inliner = "premailer"', 'inliner = "css-inline"', text, count=1, flags=re.M)
    config.write_text(text, encoding="utf-8")
    return config


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def add_anniversaries(engine: Engine, count: int) -> None:
    """``count`` customers whose customer-anniversary falls on DAY, in one transaction."""
    since = date(2020, 11, 23)
    with Session(engine) as session:
        session.add_all(
            Customer(
                external_id=f"K{n:05d}",
                email=f"k{n:05d}@example.com",
                first_name=f"Kim{n}",
                customer_since=since,
                since_md=month_day(since),
            )
            for n in range(count)
        )
        session.commit()


def mailer(config: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``mailer --config CONFIG ARGS...`` in a session of its own (stdout and stderr kept for a failure).

    Its own session is its own process group, so :func:`crash` can kill it with every helper process
    it started (the render pool), as systemd kills a unit's whole control group.
    """
    return subprocess.Popen(
        [str(MAILER), "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def crash(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and everything it started, then reap it."""
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def add_queued(engine: Engine, count: int) -> list[int]:
    """``count`` customers with one due ``queued`` send-log row each; returns the row ids in claim order."""
    add_anniversaries(engine, count)
    with Session(engine) as session:
        customers = session.execute(select(Customer).order_by(col(Customer.id))).scalars().all()
        rows = [
            SendLog(
                customer_id=c.id or 0,
                campaign="customer-anniversary",
                occasion_key="anniversary:2026",
                occasion_kind="anniversary",
                due_date=DAY,
                occasion={"years": 6},
                template="anniversary",
                status=SendStatus.QUEUED,
                to_address=c.email,
                next_attempt_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
            for c in customers
        ]
        session.add_all(rows)
        session.commit()
        return [r.id or 0 for r in rows]
