"""The CLI through click's CliRunner, and `mailer demo` once as a real subprocess."""

from __future__ import annotations

import email.policy
import json
import os
import subprocess
import sys
from email.parser import BytesParser
from pathlib import Path

from click.testing import CliRunner

from mailer.cli import cli


def invoke(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def import_sample(config: Path) -> None:
    data = config.parent / "data"
    for kind in ("customers", "interactions"):
        result = invoke(config, "import", kind, str(data / f"{kind}.csv"))
        assert result.exit_code == 0, result.output


def test_init_scaffolds_a_working_project(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "shop")])
    assert result.exit_code == 0, result.output
    shop = tmp_path / "shop"
    assert (shop / "mailer.toml").is_file() and (shop / "mailer.db").is_file()
    assert (shop / "templates" / "email" / "anniversary" / "body.html").is_file()
    assert (shop / ".mailer-secret").stat().st_mode & 0o077 == 0  # the secret is private
    again = CliRunner().invoke(cli, ["init", str(shop)])
    assert again.exit_code == 2
    assert "already exists; not overwriting" in again.stderr


def test_run_dry_run_shows_who_would_get_what_and_writes_nothing(project: Path, tmp_path: Path) -> None:
    import_sample(project)
    out = tmp_path / "preview"
    result = invoke(project, "run", "--date", "2026-11-23", "--dry-run", "--campaign", "birthday", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "would send" in result.stdout
    assert "dry run:" in result.stdout and "(nothing written, nothing sent)" in result.stdout
    rendered = sorted((out / "new").glob("*.eml"))
    assert rendered, "the dry run renders what it would send"
    message = BytesParser(policy=email.policy.default).parsebytes(rendered[0].read_bytes())
    subject = str(message["Subject"]).lower()
    assert "birthday" in subject or "geburtstag" in subject  # the sample customers read English or German
    log = invoke(project, "log", "--format", "json")
    assert json.loads(log.stdout) == []
    assert not (project.parent / "outbox" / "new").exists()


def test_run_then_log_in_every_format(project: Path) -> None:
    import_sample(project)
    result = invoke(
        project, "run", "--date", "2026-11-23", "--campaign", "birthday", "--campaign", "customer-anniversary"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("pass: sent ")
    sent = json.loads(invoke(project, "log", "--status", "sent", "--format", "json").stdout)
    assert sent and {row["status"] for row in sent} == {"sent"}
    assert {row["campaign"] for row in sent} <= {"birthday", "customer-anniversary"}
    as_csv = invoke(project, "log", "--format", "csv", "--campaign", "birthday").stdout.splitlines()
    assert as_csv[0].startswith("id,updated,customer,to,campaign,occasion,status")
    table = invoke(project, "log").stdout.splitlines()
    assert table[0].split()[:3] == ["id", "updated", "customer"]
    rerun = invoke(project, "run", "--date", "2026-11-23", "--campaign", "birthday")
    assert rerun.stdout.startswith("pass: sent 0")


def test_run_refuses_contradictory_options(project: Path) -> None:
    result = invoke(project, "run", "--date", "2026-11-23", "--now", "2026-11-23T10:00:00Z")
    assert result.exit_code == 2
    assert "use --date or --now, not both" in result.stderr


def test_an_unknown_campaign_is_a_one_line_error(project: Path) -> None:
    result = invoke(project, "run", "--dry-run", "--campaign", "brithday")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: mailer.toml: no campaign named 'brithday' (did you mean 'birthday'?)"


def test_a_store_without_tables_is_refused_not_recreated(project: Path) -> None:
    (project.parent / "mailer.db").unlink()
    result = invoke(project, "log")
    assert result.exit_code == 2
    assert "run `mailer db upgrade`" in result.stderr
    assert "Traceback" not in result.output


def test_verbose_shows_the_traceback(project: Path) -> None:
    (project.parent / "mailer.db").unlink()
    result = CliRunner().invoke(cli, ["-v", "--config", str(project), "log"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_mailer_demo_runs_end_to_end_as_a_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MAILER_CONFIG"}
    command = [sys.executable, "-c", "from mailer.cli import main; main()", "demo", "--dir", str(tmp_path / "demo")]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stderr
    assert "customers.csv: 300 rows, imported 300 new" in first.stdout
    files = sorted((tmp_path / "demo" / "outbox" / "new").glob("*.eml"))
    assert len(files) >= 5, first.stdout
    assert f"messages are in {tmp_path / 'demo' / 'outbox' / 'new'}/" in first.stdout
    for path in files:
        message = BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
        assert message.get_content_type() == "multipart/alternative"
        assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert second.returncode == 0, second.stderr
    assert "sent 0" in second.stdout
    assert len(sorted((tmp_path / "demo" / "outbox" / "new").glob("*.eml"))) == len(files)
