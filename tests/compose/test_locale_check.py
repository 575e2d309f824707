"""`mailer templates check` checks every language version, and warns about languages customers read that lack one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import cli
from mailer.compose.checker import check_templates, missing_version_warnings
from mailer.service.project import SHIPPED_TEMPLATES


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "templates" / "email"
    shutil.copytree(SHIPPED_TEMPLATES, target)
    monkeypatch.chdir(tmp_path)
    return target


def check(folder: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["templates", "check", "--no-spam-score", str(folder)])
    return result.exit_code, [line for line in result.stdout.splitlines() if line]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_broken_german_version_is_named_by_file_and_line(folder: Path) -> None:
    edit(
        folder / "birthday" / "body.de.html", "{% block content %}", "{% block content %}\n{% if customer.first_name %}"
    )
    status, lines = check(folder)
    assert status == 2
    assert lines == [
        "templates/email/birthday/body.de.html:10: Encountered unknown tag 'endblock'. You probably made a nesting "
        "mistake. Jinja is expecting this tag, but currently looking for 'elif' or 'else' or 'endif'. The innermost "
        "block that needs to be closed is 'if'."
    ]


def test_a_german_version_with_a_misspelt_variable_is_caught_like_the_default(folder: Path) -> None:
    edit(folder / "anniversary" / "body.de.txt", "occasion.years", "occasion.yeers")
    status, lines = check(folder)
    assert status == 2
    assert lines[0].startswith("templates/email/anniversary/body.de.txt:1: unknown variable 'occasion.yeers'")


def test_a_german_version_that_renders_without_the_unsubscribe_link_is_caught(folder: Path) -> None:
    edit(folder / "silence" / "body.de.txt", '{% include "_footer.de.txt" %}', "{{ company.postal_address }}")
    status, lines = check(folder)
    assert (status, lines) == (
        2,
        [
            "templates/email/silence/body.de.txt:1: no unsubscribe link: add {{ unsubscribe_url }} "
            '(or include "_footer.txt")'
        ],
    )


def test_an_incomplete_version_and_a_locale_babel_does_not_know_are_problems(folder: Path) -> None:
    (folder / "birthday" / "body.de.txt").unlink()
    (folder / "milestone" / "subject.xx.txt").write_text("Hi", encoding="utf-8")
    status, lines = check(folder)
    assert status == 2
    assert lines == [
        "templates/email/birthday/body.de.txt:1: missing: the de version has body.html, subject.txt but not this",
        "templates/email/milestone/subject.xx.txt:1: unknown locale 'xx': use a BCP 47 tag such as 'de', 'de-AT' or "
        "'pt-BR' (in the file name)",
    ]


def test_a_version_reading_a_customer_column_the_default_does_not_read_is_a_problem(folder: Path) -> None:
    edit(folder / "birthday" / "body.de.txt", "Alles Gute", "{{ customer.attributes.spitzname }}, alles Gute")
    status, lines = check(folder)
    assert status == 2
    assert lines == [
        "templates/email/birthday/body.de.txt:1: 'customer.attributes.spitzname' is used here but not by the default "
        "version: a customer without that column gets no email in this language (use '| default(...)' or add it to "
        "the default too)"
    ]


def test_languages_the_customers_read_without_a_version_are_warnings_with_counts() -> None:
    counts = {"en": 120, "de": 40, "de-AT": 3, "fr": 7, "pt-BR": 1, "en-GB": 9}
    warnings = missing_version_warnings(SHIPPED_TEMPLATES, counts, "en")
    assert len(warnings) == 6 and all(w.warning for w in warnings)  # every shipped email; en-GB reads the default
    assert warnings[0].format(SHIPPED_TEMPLATES) == (
        "anniversary: no version for fr (7 customers), pt-BR (1 customer): 8 customers get the default (en) text"
    )


def test_the_project_check_warns_about_a_language_its_customers_read_and_still_passes(project: Path) -> None:
    data = project.parent / "data" / "extra.csv"
    data.write_text("external_id,email,customer_since,locale\nF1,f@example.com,2020-01-01,fr\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(project), "import", "customers", str(data)]).exit_code == 0
    result = runner.invoke(cli, ["--config", str(project), "templates", "check", "--no-spam-score"])
    assert result.exit_code == 0, result.output
    assert "birthday: no version for fr (1 customer): 1 customer gets the default (en) text" in result.stdout
    assert "no problems, 6 warnings" in result.stdout


def test_the_shipped_german_versions_pass() -> None:
    assert check_templates(SHIPPED_TEMPLATES) == []
