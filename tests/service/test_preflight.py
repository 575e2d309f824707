"""Start-up validation: `mailer run`, `daemon`, `retry` and `serve` refuse a broken configuration, writing nothing."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlmodel import Session

from mailer import store
from mailer.config import load_settings
from mailer.service import preflight
from mailer.service.project import init_project
from mailer.store.tables import PassRun, SendLog
from tests.support.served import Served

RUN = ("run", "--date", "2026-11-23")


def invoke(config: Path, *args: str) -> Result:
    from mailer.cli import cli

    return CliRunner().invoke(cli, ["--config", str(config), *args])


def import_sample(config: Path) -> None:
    data = config.parent / "data"
    for kind in ("customers", "interactions"):
        result = invoke(config, "import", kind, str(data / f"{kind}.csv"))
        assert result.exit_code == 0, result.output


def rows(config: Path) -> tuple[int, int]:
    """(send-log rows, recorded passes) in the project's store."""
    engine = store.make_engine(load_settings(config).store.url)
    try:
        with Session(engine) as session:
            sent = session.execute(select(func.count()).select_from(SendLog)).scalar_one()
            passes = session.execute(select(func.count()).select_from(PassRun)).scalar_one()
    finally:
        engine.dispose()
    return sent, passes


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def prepend(path: Path, text: str) -> None:
    path.write_text(text + path.read_text(encoding="utf-8"), encoding="utf-8")


def error_lines(result: Result) -> list[str]:
    return result.stderr.splitlines()


@pytest.fixture
def imported(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The `project` with its sample customers imported (a pass for 2026-11-23 has mail to send), cwd inside it."""
    monkeypatch.chdir(project.parent)
    import_sample(project)
    return project


def test_the_scaffolded_project_passes_every_start_up_check(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.parent)
    settings = load_settings(project)
    assert preflight.check(settings, preflight.SEND, shown_from=project.parent) == []
    result = invoke(project, *RUN)
    assert result.exit_code == 0, result.output


def test_a_campaign_whose_template_folder_is_missing_refuses_the_run_before_any_row(imported: Path) -> None:
    edit(imported, 'template = "birthday"', 'template = "birthdy"')
    result = invoke(imported, *RUN)
    assert result.exit_code == 2, result.output
    assert error_lines(result) == [
        "error: mailer.toml: [[campaign]] birthday: template 'birthdy' not found in templates/email/"
        " (did you mean 'birthday'?)"
    ]
    assert rows(imported) == (0, 0)
    assert not (imported.parent / "outbox" / "new").exists()


def test_a_template_syntax_error_refuses_the_run_naming_file_and_line(imported: Path) -> None:
    edit(imported.parent / "templates/email/birthday/body.html", "{% block content %}", "{% block content %}{% if %}")
    result = invoke(imported, *RUN)
    assert result.exit_code == 2, result.output
    assert error_lines(result) == [
        "error: templates/email/birthday/body.html:3: Expected an expression, got 'end of statement block'"
    ]
    assert rows(imported) == (0, 0)


def test_an_undefined_variable_refuses_the_run_with_a_did_you_mean(imported: Path) -> None:
    edit(imported.parent / "templates/email/birthday/body.html", "customer.first_name", "customer.frist_name")
    result = invoke(imported, *RUN)
    assert result.exit_code == 2, result.output
    assert error_lines(result) == [
        "error: templates/email/birthday/body.html:4: unknown variable 'customer.frist_name'"
        " (did you mean 'customer.first_name'?)"
    ]
    assert rows(imported) == (0, 0)


def test_an_empty_signing_secret_refuses_the_run_before_the_first_queued_row(imported: Path) -> None:
    (imported.parent / ".mailer-secret").write_text("\n")
    result = invoke(imported, *RUN)
    assert result.exit_code == 2, result.output
    assert re.fullmatch(r"error: mailer\.toml: \[sender\] secret_file: /.*/\.mailer-secret is empty\n", result.stderr)
    assert rows(imported) == (0, 0)


def test_every_problem_is_listed_one_line_each_not_just_the_first(imported: Path) -> None:
    edit(imported, 'template = "birthday"', 'template = "birthdy"')
    prepend(imported.parent / "templates/email/silence/subject.txt", "{{ {{ ")
    (imported.parent / ".mailer-secret").unlink()
    result = invoke(imported, *RUN)
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 3, lines
    assert lines[0].startswith("error: mailer.toml: [[campaign]] birthday: template 'birthdy' not found")
    assert lines[1].startswith("error: templates/email/silence/subject.txt:1: ")
    assert lines[2].startswith("error: mailer.toml: [sender] secret_file: cannot read ")
    assert rows(imported) == (0, 0)


def test_a_refused_start_creates_no_store_file_and_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = init_project(tmp_path / "fresh", date(2026, 11, 23), customers=5)  # no store yet
    monkeypatch.chdir(config.parent)
    (config.parent / ".mailer-secret").write_text("")
    for command in (RUN, ("run", "--dry-run"), ("daemon",), ("retry",), ("serve", "--port", "0")):
        result = invoke(config, *command)
        assert result.exit_code == 2, (command, result.output)
        assert "[sender] secret_file: " in result.stderr and " is empty" in result.stderr
        assert sorted(p.name for p in config.parent.glob("mailer.db*")) == [], command


def test_the_daemon_refuses_a_broken_template_before_its_catch_up_pass(imported: Path) -> None:
    prepend(imported.parent / "templates/email/anniversary/body.txt", "{{ nonsense_here }}")
    result = invoke(imported, "daemon")
    assert result.exit_code == 2, result.output
    assert error_lines(result)[0].startswith("error: templates/email/anniversary/body.txt:")
    assert "unknown variable 'nonsense_here'" in result.stderr
    assert rows(imported) == (0, 0)


def test_the_daemon_refuses_an_imap_inbox_whose_password_is_not_set_but_a_pass_does_not_need_it(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILER_TEST_NO_SUCH_PASSWORD", raising=False)
    with imported.open("a", encoding="utf-8") as config:
        config.write('\n[inbox]\nkind = "imap"\nhost = "127.0.0.1"\nusername = "bounces"\n'
                     'password_env = "MAILER_TEST_NO_SUCH_PASSWORD"\n')
    result = invoke(imported, "daemon")
    assert result.exit_code == 2, result.output
    assert error_lines(result) == [
        "error: mailer.toml: [inbox] password_env: environment variable MAILER_TEST_NO_SUCH_PASSWORD is not set"
    ]
    assert rows(imported) == (0, 0)
    assert invoke(imported, *RUN, "--dry-run").exit_code == 0


def test_a_dry_run_checks_templates_too(imported: Path) -> None:
    prepend(imported.parent / "templates/email/birthday/subject.txt", "{{ customer.nope }}")
    result = invoke(imported, *RUN, "--dry-run")
    assert result.exit_code == 2, result.output
    assert "templates/email/birthday/subject.txt:1: unknown variable 'customer.nope'" in result.stderr


def test_simulate_checks_templates_before_copying_the_store(imported: Path) -> None:
    prepend(imported.parent / "templates/email/birthday/subject.txt", "{{ customer.nope }}")
    result = invoke(imported, "simulate", "--from", "2026-11-23", "--days", "2")
    assert result.exit_code == 2, result.output
    assert "templates/email/birthday/subject.txt:1: unknown variable 'customer.nope'" in result.stderr


def _smtp_with_login(config: Path, password_env: str) -> None:
    edit(
        config,
        'kind = "maildir"                       # "smtp" for real delivery',
        f'kind = "smtp"\nhost = "127.0.0.1"\nport = 9\nusername = "mailer"\npassword_env = "{password_env}"',
    )


def test_the_smtp_password_is_needed_to_send_but_not_for_a_dry_run(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFLIGHT_TEST_SMTP_PASSWORD", raising=False)
    _smtp_with_login(imported, "PREFLIGHT_TEST_SMTP_PASSWORD")
    dry = invoke(imported, *RUN, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would send" in dry.stdout
    real = invoke(imported, *RUN)
    assert real.exit_code == 2, real.output
    assert error_lines(real) == [
        "error: mailer.toml: [transport] password_env: environment variable PREFLIGHT_TEST_SMTP_PASSWORD is not set"
    ]
    assert rows(imported) == (0, 0)


def test_serve_needs_the_secret_but_not_sound_templates(project: Path) -> None:
    edit(project.parent / "templates/email/birthday/body.html", "{% block content %}", "{% block content %}{% if %}")
    settings = load_settings(project)
    assert preflight.check(settings, preflight.SERVE) == []
    assert preflight.check(settings, preflight.SEND) != []
    server = Served(project)  # the unsubscribe endpoint keeps working while a marketer fixes a template
    try:
        assert server.request("GET", "/healthz").status == 200
    finally:
        server.stop()


def test_problems_in_templates_no_enabled_campaign_uses_do_not_block_a_pass(project: Path) -> None:
    folder = project.parent / "templates/email"
    (folder / "old_promo").mkdir()
    (folder / "old_promo" / "subject.txt").write_text("{{ broken")
    edit(
        project,
        'name = "birthday"\noccasion = "birthday"\n',
        'name = "birthday"\noccasion = "birthday"\nenabled = false\n',
    )
    edit(project, 'template = "birthday"', 'template = "no_such_folder"')
    assert preflight.check(load_settings(project)) == []


def test_a_missing_dkim_key_and_ca_file_are_reported_with_their_keys(project: Path) -> None:
    edit(
        project,
        'timezone = "Europe/London"',
        'timezone = "Europe/London"\ndkim_selector = "mail"\ndkim_key_file = "dkim.pem"',
    )
    edit(
        project,
        'kind = "maildir"                       # "smtp" for real delivery',
        'kind = "smtp"\nca_file = "ca.pem"',
    )
    (project.parent / "ca.pem").write_text("not a certificate\n")
    settings = load_settings(project)
    problems = preflight.check(settings, shown_from=project.parent)
    assert problems[0] == "mailer.toml: [sender] dkim_key_file: " + str(project.parent / "dkim.pem") + (
        ": cannot read it: No such file or directory"
    )
    assert problems[1].startswith("mailer.toml: [transport] ca_file: ca.pem: ")
    assert len(problems) == 2
    assert preflight.check(settings, preflight.DRY_RUN) == problems[:1]  # a dry run signs, but connects to nothing


def test_a_campaign_that_asks_needs_the_owners_notice_and_a_broken_one_refuses_the_run(imported: Path) -> None:
    notice = imported.parent / "templates/email/feedback_notice"
    edit(notice / "body.txt", "{{ occasion.comment }}", "{{ occasion.coment }}")
    result = invoke(imported, *RUN)
    assert result.exit_code == 2, result.output
    assert error_lines(result) == [
        "error: templates/email/feedback_notice/body.txt:5: unknown variable 'occasion.coment'"
        " (did you mean 'occasion.comment'?)"
    ]
    shutil.rmtree(notice)
    result = invoke(imported, *RUN)
    assert error_lines(result) == [
        'error: mailer.toml: [[campaign]] how-did-we-do: asks "how did we do?", but the owner\'s notice template'
        " 'feedback_notice' is not in templates/email/ (copy it from a new `mailer init`)"
    ]
    assert rows(imported) == (0, 0)
