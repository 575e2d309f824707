"""`mailer preview --locale` and the preview page's language field: any template, in any of its versions."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from flask.testing import FlaskClient

from mailer.cli import cli
from mailer.config import Settings
from mailer.web.preview import create_app


def invoke(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(project), *args])
    return result.exit_code, result.stdout, result.stderr


def client(settings: Settings) -> FlaskClient:
    app = create_app(settings)
    app.config["TESTING"] = True
    return app.test_client()


def test_preview_in_german_for_an_english_sample_customer(project: Path) -> None:
    code, stdout, _ = invoke(
        project, "preview", "anniversary", "--customer", "sample-full", "--date", "2026-03-14", "--locale", "de"
    )
    assert code == 0, stdout
    assert stdout.startswith(
        "Subject: 5 Jahre gemeinsam, Amelia: danke\n(anniversary email for sample-full, in de: the de templates)\n"
    )
    assert "Am 14. März 2021 sind Sie Kunde bei Northwind Coffee Roasters geworden." in stdout


def test_preview_uses_the_customers_own_locale_by_default_and_an_english_one_on_request(project: Path) -> None:
    code, stdout, _ = invoke(project, "preview", "birthday", "--customer", "sample-de", "--date", "2026-07-02")
    assert code == 0
    assert stdout.startswith("Subject: Alles Gute zum Geburtstag, Jürgen!")
    assert "(birthday email for sample-de, in de-AT: the de templates)" in stdout
    code, stdout, _ = invoke(
        project, "preview", "birthday", "--customer", "sample-de", "--date", "2026-07-02", "--locale", "en"
    )
    assert stdout.startswith("Subject: Happy birthday, Jürgen!")


def test_preview_refuses_an_unknown_locale_in_one_line(project: Path) -> None:
    code, _, stderr = invoke(project, "preview", "birthday", "--locale", "xx")
    assert code == 2
    assert stderr.strip() == ("error: locale: unknown locale 'xx': use a BCP 47 tag such as 'de', 'de-AT' or 'pt-BR'")


def test_the_preview_page_shows_the_chosen_language(settings: Settings) -> None:
    page = client(settings).get("/t/milestone?customer=sample-full&date=2026-06-15&locale=de-AT")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Ihre 10. Bestellung bei uns, Amelia: danke" in text
    assert "in de-AT" in text and "de templates" in text
    assert 'name="locale" value="de-AT"' in text
    alone = client(settings).get("/t/milestone/email.html?customer=sample-full&date=2026-06-15&locale=de")
    assert alone.status_code == 200 and '<html lang="de">' in alone.get_data(as_text=True)
