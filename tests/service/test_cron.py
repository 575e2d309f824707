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


def unit_settings(name: str) -> dict[str, str]:
    """The ``Key=value`` lines of a shipped systemd unit (each key once in these units)."""
    lines = (CRON / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^\w+=", line))


def test_the_systemd_unit_runs_the_daemon_unprivileged_and_stops_it_with_sigterm() -> None:
    unit = unit_settings("mailer.service")
    assert unit["ExecStart"].split()[-1] == "daemon"
    assert (unit["User"], unit["KillSignal"], unit["Restart"]) == ("mailer", "SIGTERM", "on-failure")
    assert unit["EnvironmentFile"] == "/etc/mailer/env" and unit["NoNewPrivileges"] == "yes"


def test_the_web_unit_serves_on_the_loopback_port_the_proxy_snippets_forward_to() -> None:
    unit = unit_settings("mailer-web.service")
    program, *args = shlex.split(unit["ExecStart"])
    assert program == "/opt/mailer/venv/bin/mailer" and args[0] == "serve"
    # The options parse as `mailer serve` reads them (a renamed option would fail here, not on a server).
    serve = cli.commands["serve"]
    context = serve.make_context("serve", args[1:])
    assert (context.params["host"], context.params["port"]) == ("127.0.0.1", 8025)
    assert (unit["User"], unit["KillSignal"], unit["Restart"]) == ("mailer", "SIGTERM", "on-failure")
    assert unit["EnvironmentFile"] == "/etc/mailer/env" and unit["NoNewPrivileges"] == "yes"

    nginx = (CRON / "nginx-mailer.conf").read_text()
    assert "location /mailer/ {" in nginx and "proxy_pass http://127.0.0.1:8025;" in nginx  # no URI: path verbatim
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert f"proxy_set_header {header}" in nginx
    assert 'proxy_set_header X-Forwarded-Prefix "";' in nginx
    caddy = (CRON / "Caddyfile.mailer").read_text()
    assert "handle /mailer/* {" in caddy and "reverse_proxy 127.0.0.1:8025" in caddy
    assert "handle_path /mailer" not in caddy  # it would strip the path mailer serve answers at
    assert "header_up -X-Forwarded-Prefix" in caddy
