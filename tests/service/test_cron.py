"""cron/: the shipped crontab and systemd unit run commands that exist and behave as their comments say."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from mailer.cli import cli

CRON = Path(__file__).resolve().parents[2] / "cron"


def crontab_commands() -> list[list[str]]:
    """The arguments of each crontab job's mailer command (up to a redirection or the end of $(...)), in order."""
    jobs = [line for line in (CRON / "mailer.crontab").read_text().splitlines() if re.match(r"^[0-9*]", line)]
    return [shlex.split(re.search(r"/venv/bin/mailer ([^)>|&]*)", job).group(1)) for job in jobs]  # type: ignore[union-attr]


def test_the_crontab_runs_the_pass_the_retry_sweep_and_a_status_that_passes_on_a_healthy_store(project: Path) -> None:
    commands = crontab_commands()
    assert commands == [["run"], ["retry", "--if-idle"], ["status"]]
    for args in commands:
        result = CliRunner().invoke(cli, ["--config", str(project), *args])
        assert result.exit_code == 0, (args, result.output)


def test_the_systemd_unit_runs_the_daemon_unprivileged_and_stops_it_with_sigterm() -> None:
    unit = dict(
        line.split("=", 1) for line in (CRON / "mailer.service").read_text().splitlines() if re.match(r"^\w+=", line)
    )
    assert unit["ExecStart"].split()[-1] == "daemon"
    assert (unit["User"], unit["KillSignal"], unit["Restart"]) == ("mailer", "SIGTERM", "on-failure")
    assert unit["EnvironmentFile"] == "/etc/mailer/env" and unit["NoNewPrivileges"] == "yes"
