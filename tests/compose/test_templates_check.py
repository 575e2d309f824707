"""`mailer templates check`: the shipped templates pass; typical mistakes are caught with file, line and a fix."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import cli
from mailer.compose.checker import check_templates
from mailer.config import Settings
from mailer.outbox.feedback import NOTICE_TEMPLATE
from mailer.service.project import SHIPPED_TEMPLATES
from tests.support.samples import SHIPPED
from tests.support.spam import GTUBE, needs_spamassassin

LINE = re.compile(r"^(?P<file>templates/email/[^:]+):(?P<line>\d+): (?P<problem>.+)$")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped templates at ./templates/email, with the working directory above it."""
    target = tmp_path / "templates" / "email"
    shutil.copytree(SHIPPED_TEMPLATES, target)
    monkeypatch.chdir(tmp_path)
    return target


def check(folder: Path, *options: str) -> tuple[int, list[str]]:
    """Exit status and stdout lines of the check; without spam scores unless ``--spam-score`` is given."""
    result = CliRunner().invoke(cli, ["templates", "check", "--no-spam-score", *options, str(folder)])
    return result.exit_code, [line for line in result.stdout.splitlines() if line]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_shipped_templates_pass_against_the_shipped_campaigns() -> None:
    assert check_templates(SHIPPED.render.templates, SHIPPED.campaigns, SHIPPED.sender) == []


def test_the_shipped_templates_pass_on_the_command_line_in_a_new_project(project: Path, settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "templates", "check"])
    assert result.exit_code == 0, result.output
    assert f"templates in {settings.render.templates}: no problems" in result.stdout


def test_a_typo_in_a_variable_name_is_reported_with_file_line_and_a_suggestion(folder: Path) -> None:
    edit(folder / "anniversary" / "body.html", "customer.first_name", "customer.frist_name")
    code, lines = check(folder)
    assert code == 2
    assert lines == [
        "templates/email/anniversary/body.html:4: unknown variable 'customer.frist_name' "
        "(did you mean 'customer.first_name'?)"
    ]


def test_an_unknown_top_level_name_is_reported_with_a_suggestion(folder: Path) -> None:
    edit(folder / "birthday" / "subject.txt", "company.name", "compnay.name")
    code, lines = check(folder)
    assert code == 2
    assert lines == ["templates/email/birthday/subject.txt:1: unknown variable 'compnay' (did you mean 'company'?)"]


def test_the_gift_variables_are_known_and_a_typo_in_them_is_caught_in_the_gift_partial(folder: Path) -> None:
    uses = "{% if gift %}{{ gift.label }} until {{ gift.expires | date }}{% endif %}\n"
    edit(folder / "birthday" / "body.txt", "{% include", uses + "{% include")
    assert check(folder) == (0, [f"7 templates in {folder}: no problems"])  # six emails and the owner's notice
    edit(folder / "_gift.txt", "{{ gift.code }}", "{{ gift.cod }}")
    code, lines = check(folder)
    assert code == 2
    assert "templates/email/_gift.txt:4: unknown variable 'gift.cod' (did you mean 'gift.code'?)" in lines


def test_a_template_that_uses_the_gift_outside_an_if_fails_for_an_email_without_one(folder: Path) -> None:
    edit(folder / "birthday" / "body.txt", "{% include", "Your code: {{ gift.code }}\n{% include")
    code, lines = check(folder)
    assert code == 2
    assert lines == [  # the check renders each email with a gift and without one
        "templates/email/birthday/body.txt:10: 'None' has no attribute 'code' (birthday email for sample-email-only)"
    ]


def test_an_occasion_detail_from_another_kind_of_email_is_reported(folder: Path) -> None:
    edit(folder / "birthday" / "body.txt", "Happy birthday", "{{ occasion.years }} years, happy birthday")
    code, lines = check(folder)
    assert code == 2
    assert lines == [
        "templates/email/birthday/body.txt:1: 'occasion.years' exists only in anniversary or date emails; "
        "this template is sent for birthday"
    ]


def test_a_syntax_error_names_its_line(folder: Path) -> None:
    edit(folder / "silence" / "body.txt", "{{ occasion.days_silent }}", "{{ occasion.days_silent }")
    code, lines = check(folder)
    assert code == 2
    [line] = lines
    assert line.startswith("templates/email/silence/body.txt:3: unexpected '}'")


def test_an_unknown_filter_is_reported_with_a_suggestion_even_in_a_branch_not_taken(folder: Path) -> None:
    edit(folder / "milestone" / "body.txt", "| ordinal", "| ordinall")
    edit(folder / "milestone" / "body.txt", "| money", "| mony")
    code, lines = check(folder)
    assert code == 2
    assert lines == [
        "templates/email/milestone/body.txt:4: unknown filter 'ordinall' (did you mean 'ordinal'?)",
        "templates/email/milestone/body.txt:6: unknown filter 'mony' (did you mean 'money'?)",
    ]


def test_missing_parts_are_each_reported(folder: Path) -> None:
    (folder / "follow_up" / "body.txt").unlink()
    (folder / "follow_up" / "subject.txt").unlink()
    code, lines = check(folder)
    assert code == 2
    assert lines == [
        "templates/email/follow_up/body.txt:1: missing: every email needs subject.txt, body.html, body.txt",
        "templates/email/follow_up/subject.txt:1: missing: every email needs subject.txt, body.html, body.txt",
    ]


def test_an_email_without_the_unsubscribe_link_or_postal_address_is_refused_in_each_part(folder: Path) -> None:
    edit(folder / "_footer.txt", "Rather not? Unsubscribe in one click: {{ unsubscribe_url }}", "")
    edit(folder / "_layout.html", "<p>{{ company.name }} · {{ company.postal_address }}</p>", "")
    code, lines = check(folder)
    assert code == 2
    names = customer_emails(folder)
    expected = []
    for name in names:
        # The German layout builds on the English one: it loses the address with it (its footer is its own).
        expected.append(
            f"templates/email/{name}/body.de.html:1: no postal address: "
            "add {{ company.postal_address }} (the layout has it)"
        )
        expected.append(
            f"templates/email/{name}/body.html:1: no postal address: "
            "add {{ company.postal_address }} (the layout has it)"
        )
        expected.append(
            f"templates/email/{name}/body.txt:1: no unsubscribe link: "
            'add {{ unsubscribe_url }} (or include "_footer.txt")'
        )
    assert lines == expected


def test_an_unsubscribe_url_outside_a_link_does_not_count_in_html(folder: Path) -> None:
    edit(
        folder / "_layout.html", '<a href="{{ unsubscribe_url }}">Unsubscribe in one click</a>', "{{ unsubscribe_url }}"
    )
    code, lines = check(folder)
    assert code == 2
    assert all("no unsubscribe link: add <a href=" in line for line in lines)
    assert len(lines) == len(customer_emails(folder))


def test_an_image_without_alt_text_is_reported_at_its_line(folder: Path) -> None:
    edit(folder / "birthday" / "body.html", "<h1>", '<img src="https://n.example/cake.png" width="80">\n<h1>')
    code, lines = check(folder)
    assert code == 2
    assert lines == ['templates/email/birthday/body.html:4: image without alt text: add alt="what the picture shows"']


def test_reaching_for_python_internals_is_reported_as_refused(folder: Path) -> None:
    edit(folder / "anniversary" / "subject.txt", "together", "{{ customer.__class__ }} together")
    code, lines = check(folder)
    assert code == 2
    assert lines == [
        "templates/email/anniversary/subject.txt:1: '.__class__' is not allowed: "
        "names starting with '_' are Python internals"
    ]


def test_a_detail_that_breaks_only_for_a_customer_without_a_name_is_found_by_the_sample_renders(folder: Path) -> None:
    edit(
        folder / "birthday" / "body.txt",
        'Happy birthday, {{ customer.first_name | default("friend") }}!',
        "Happy birthday, {{ customer.first_name[0] }}!",
    )
    code, lines = check(folder)
    assert code == 2
    [line] = lines
    assert line.startswith("templates/email/birthday/body.txt:1: ")
    assert "sample-email-only" in line


def test_a_campaign_naming_a_missing_template_is_reported(folder: Path) -> None:
    problems = check_templates(
        folder,
        [
            *SHIPPED.campaigns,
            *[c.__class__(**{**c.__dict__, "name": "spring", "template": "anniversay"}) for c in SHIPPED.campaigns[:1]],
        ],
    )
    assert [p.message for p in problems] == [
        "campaign 'spring' uses template 'anniversay', which does not exist (did you mean 'anniversary'?)"
    ]


def test_every_problem_line_has_the_file_line_problem_shape(folder: Path) -> None:
    edit(folder / "anniversary" / "body.html", "customer.first_name", "customer.frist_name")
    edit(folder / "silence" / "body.txt", "{{ occasion.days_silent }}", "{{ occasion.days_silent }")
    (folder / "birthday" / "body.txt").unlink()
    code, lines = check(folder)
    assert code == 2
    assert len(lines) == 3
    assert all(LINE.match(line) for line in lines), lines


# The preheader as it was hidden before: tiny, in the background's colour, transparent.
OLD_PREHEADER = (
    ".preheader { display: none; max-height: 0; overflow: hidden; font-size: 1px; line-height: 1px; "
    "color: #f4f1ec; opacity: 0; }"
)
OLD_PREHEADER_SCORE = "spam score 1.7 (FONT_INVIS_MSGID 1.0, HTML_FONT_LOW_CONTRAST 0.7)"


def customer_emails(folder: Path) -> list[str]:
    """The emails built on _layout.html and _footer.txt (not the owner's notice, not the _pages folder)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name[0] != "_" and p.name != NOTICE_TEMPLATE)


def hide_preheader_the_old_way(folder: Path) -> None:
    style = folder / "_style.css"
    lines = style.read_text(encoding="utf-8").splitlines(keepends=True)
    [number] = [n for n, line in enumerate(lines) if line.startswith(".preheader {")]
    lines[number] = OLD_PREHEADER + "\n"
    style.write_text("".join(lines), encoding="utf-8")


@needs_spamassassin
def test_text_hidden_the_way_spam_hides_it_gets_a_warning_with_the_rules_and_the_check_still_passes(
    folder: Path,
) -> None:
    hide_preheader_the_old_way(folder)
    code, lines = check(folder, "--spam-score")
    names = customer_emails(folder)
    assert code == 0
    assert lines == [
        *(f"templates/email/{name}: {OLD_PREHEADER_SCORE}" for name in names),
        f"{len(names) + 1} templates in {folder}: no problems, {len(names)} warnings",  # + the owner's notice
    ]


@needs_spamassassin
def test_an_email_spamassassin_files_as_spam_is_a_problem(folder: Path) -> None:
    edit(folder / "birthday" / "body.html", "</p>", f"</p>\n<p>{GTUBE}</p>")
    code, lines = check(folder, "--spam-score")
    assert code == 2
    assert lines == ["templates/email/birthday: spam score 1000.0 (GTUBE 1000.0)"]


@needs_spamassassin
def test_an_email_with_another_problem_is_not_scored_and_the_others_still_are(folder: Path) -> None:
    hide_preheader_the_old_way(folder)
    edit(folder / "anniversary" / "body.html", "customer.first_name", "customer.frist_name")
    code, lines = check(folder, "--spam-score")
    others = [name for name in customer_emails(folder) if name != "anniversary"]
    assert code == 2
    assert lines == [
        "templates/email/anniversary/body.html:4: unknown variable 'customer.frist_name' "
        "(did you mean 'customer.first_name'?)",
        *(f"templates/email/{name}: {OLD_PREHEADER_SCORE}" for name in others),
    ]


def test_without_spamassassin_the_check_says_so_in_one_line_and_passes(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_preheader_the_old_way(folder)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-installed-here"))
    result = CliRunner().invoke(cli, ["templates", "check", str(folder)])
    assert result.exit_code == 0
    assert result.stderr == "spam scores skipped: SpamAssassin is not installed (apt install spamassassin)\n"
    assert result.stdout.endswith(": no problems\n")
