"""mailer.toml: typed settings, one-line errors naming file, section and key; secrets never in the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import cli
from mailer.config import ConfigError, Secret, load_settings, parse_duration


def _with(project: Path, old: str, new: str) -> Path:
    text = project.read_text(encoding="utf-8")
    assert old in text, old
    project.write_text(text.replace(old, new, 1), encoding="utf-8")
    return project


def test_the_init_project_config_loads_into_typed_settings(project: Path) -> None:
    settings = load_settings(project)
    assert settings.transport.kind == "maildir"
    assert settings.policy.min_days_between == 7
    assert settings.policy.window_start.hour == 9
    assert {c.occasion for c in settings.campaigns} >= {"anniversary", "birthday"}
    assert settings.store.url.startswith("sqlite:////")  # made absolute, relative to the file


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "min_days_between = 7",
            "min_days_betwen = 7",
            "mailer.toml: [policy] min_days_betwen: unknown key (did you mean 'min_days_between'?)",
        ),
        (
            "min_days_between = 7",
            'min_days_between = "seven"',
            "mailer.toml: [policy] min_days_between: expected an integer, got 'seven'",
        ),
        (
            'kind = "maildir"',
            'kind = "smtpp"',
            "mailer.toml: [transport] kind: must be one of maildir, smtp, got 'smtpp' (did you mean 'smtp'?)",
        ),
        (
            'timezone = "Europe/London"',
            'timezone = "Mars/Olympus"',
            "mailer.toml: [sender] timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            'from_address = "hello@northwind.example"',
            'from_address = "not an address"',
            "mailer.toml: [sender] from_address: not a valid address",
        ),
        (
            'window_end = "17:00"',
            'window_end = "08:00"',
            "mailer.toml: [policy] window_end: must be later than window_start",
        ),
        ('occasion = "birthday"', 'occasion = "birthdya"', "mailer.toml: [campaign birthday] occasion: must be one of"),
        ('retry_every = "5m"', 'retry_every = "soon"', "mailer.toml: [schedule] retry_every: expected a duration"),
    ],
)
def test_a_bad_value_is_one_line_naming_file_section_and_key(project: Path, old: str, new: str, message: str) -> None:
    _with(project, old, new)
    with pytest.raises(ConfigError) as caught:
        load_settings(project)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_password_written_in_the_file_is_refused(project: Path) -> None:
    _with(project, 'kind = "maildir"', 'kind = "smtp"\npassword = "hunter2"')
    with pytest.raises(ConfigError, match=r"\[transport\] password: secrets never live in the file"):
        load_settings(project)


def test_secrets_are_read_from_env_or_file_only_when_needed_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-value")
    secret = Secret(env="TEST_SMTP_PASSWORD", origin="mailer.toml: [transport] password_env")
    assert secret.reveal() == "s3cret-value"
    assert "s3cret" not in repr(secret)
    missing = Secret(file=tmp_path / "nope", origin="mailer.toml: [transport] password_file")
    with pytest.raises(ConfigError, match=r"password_file: cannot read .*nope"):
        missing.reveal()


def test_durations_accept_units_and_reject_nonsense() -> None:
    assert parse_duration("30m").total_seconds() == 1800
    assert parse_duration("3d").days == 3
    assert parse_duration(90).total_seconds() == 90
    for bad in ("", "5 parsecs", "-3h", 0):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_cli_reports_a_config_typo_as_one_line_with_exit_status_2(project: Path) -> None:
    _with(project, "catch_up_days = 3", "catchup_days = 3")
    result = CliRunner().invoke(cli, ["--config", str(project), "log"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: mailer.toml: [policy] catchup_days: unknown key (did you mean 'catch_up_days'?)"
    )
    assert "Traceback" not in result.output


def test_a_missing_config_points_to_mailer_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILER_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["log"])
    assert result.exit_code == 2
    assert "mailer.toml: no such configuration file; run `mailer init`" in result.stderr


def test_web_trusts_no_proxy_unless_told_how_many_hops(project: Path) -> None:
    assert load_settings(project).web.trusted_proxies == 0
    project.write_text(project.read_text(encoding="utf-8") + "\n[web]\ntrusted_proxies = 2\n", encoding="utf-8")
    assert load_settings(project).web.trusted_proxies == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("trusted_proxy = 1", "mailer.toml: [web] trusted_proxy: unknown key (did you mean 'trusted_proxies'?)"),
        ("trusted_proxies = -1", "mailer.toml: [web] trusted_proxies: must be at least 0, got -1"),
        ("trusted_proxies = true", "mailer.toml: [web] trusted_proxies: expected an integer, got True"),
    ],
)
def test_a_bad_web_setting_is_one_line_naming_the_key(project: Path, line: str, message: str) -> None:
    project.write_text(project.read_text(encoding="utf-8") + f"\n[web]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(project)
    assert str(caught.value) == message


def test_no_inbox_section_means_no_inbox_and_processed_defaults_to_a_maildir_subfolder(project: Path) -> None:
    assert load_settings(project).inbox is None
    section = '\n[inbox]\nkind = "maildir"\npath = "in"\n'
    project.write_text(project.read_text(encoding="utf-8") + section, encoding="utf-8")
    inbox = load_settings(project).inbox
    assert inbox is not None
    base = project.parent
    assert (inbox.kind, inbox.path, inbox.processed) == ("maildir", base / "in", base / "in" / ".processed")


def test_an_imap_inbox_defaults_to_verified_implicit_tls_on_993_and_a_processed_folder(project: Path) -> None:
    section = '\n[inbox]\nkind = "imap"\nhost = "imap.example.com"\nusername = "bounces"\npassword_env = "IMAP_PW"\n'
    project.write_text(project.read_text(encoding="utf-8") + section, encoding="utf-8")
    inbox = load_settings(project).inbox
    assert inbox is not None and inbox.imap is not None
    imap = inbox.imap
    assert (imap.host, imap.port, imap.security, imap.folder, imap.processed_folder, imap.ca_file) == (
        "imap.example.com", 993, "tls", "INBOX", "Processed", None
    )
    assert "IMAP_PW" in repr(imap.password) and (inbox.soft_bounces.limit, inbox.soft_bounces.days) == (3, 14)
    starttls = section.replace('password_env = "IMAP_PW"', 'password_env = "IMAP_PW"\nsecurity = "starttls"')
    project.write_text(project.read_text(encoding="utf-8").replace(section, starttls), encoding="utf-8")
    imap = load_settings(project).inbox.imap  # type: ignore[union-attr]
    assert imap is not None and (imap.security, imap.port) == ("starttls", 143)


def test_verp_needs_a_bounce_address_without_a_tag_of_its_own(project: Path) -> None:
    text = project.read_text(encoding="utf-8")
    for extra, message in (
        ("verp = true", "mailer.toml: [sender] verp: needs bounce_address: the address whose +tag names each message"),
        ('bounce_address = "bounce+x@northwind.example"\nverp = true',
         "mailer.toml: [sender] bounce_address: must have no +tag of its own when verp = true (mailer adds one)"),
    ):
        project.write_text(text.replace("[sender]\n", f"[sender]\n{extra}\n"), encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_settings(project)
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('path = "in"', """mailer.toml: [inbox] kind: is required ("maildir" or "imap")"""),
        ('kind = "pop3"\npath = "in"', "mailer.toml: [inbox] kind: must be one of maildir, imap, got 'pop3'"),
        ('kind = "imap"\nusername = "bounces"', "mailer.toml: [inbox] host: is required"),
        ('kind = "imap"\nhost = "imap.example.com"\nusername = "bounces"',
         "mailer.toml: [inbox] password_env: set password_env or password_file (the password never lives in the file)"),
        ('kind = "imap"\nhost = "imap.example.com"\nusername = "b"\npassword = "hunter2"',
         "mailer.toml: [inbox] password: secrets never live in the file; use password_env or password_file"),
        ('kind = "imap"\nhost = "h"\nusername = "b"\npassword_env = "P"\nsecurity = "none"',
         "mailer.toml: [inbox] security: must be one of tls, starttls, got 'none'"),
        ('kind = "imap"\nhost = "h"\nusername = "b"\npassword_env = "P"\nprocessed_folder = "INBOX"',
         "mailer.toml: [inbox] processed_folder: must be another folder than folder, or handled mail would be read "
         "again"),
        ('kind = "imap"\nhost = "h"\nusername = "b"\npassword_env = "P"\nsoft_bounce_limit = 0',
         "mailer.toml: [inbox] soft_bounce_limit: must be at least 1, got 0"),
        ('kind = "maildir"', "mailer.toml: [inbox] path: is required: the Maildir folder the mail server delivers to"),
        ('kind = "maildir"\npath = "in"\nprocesed = "done"',
         "mailer.toml: [inbox] procesed: unknown key (did you mean 'processed'?)"),
        ('kind = "maildir"\npath = "in"\nprocessed = "in"',
         "mailer.toml: [inbox] processed: must be another folder than path, or handled mail would be read again"),
    ],
)
def test_a_bad_inbox_setting_is_one_line_naming_the_key(project: Path, lines: str, message: str) -> None:
    project.write_text(project.read_text(encoding="utf-8") + f"\n[inbox]\n{lines}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(project)
    assert str(caught.value) == message


def test_a_campaign_label_is_what_customers_read_and_defaults_to_the_name_in_words(project: Path) -> None:
    settings = load_settings(_with(project, 'label = "Birthday wishes"', 'label = "  Birthday   wishes "'))
    assert settings.campaign("birthday").title == "Birthday wishes"
    assert settings.campaign("we-miss-you").label == ""
    assert settings.campaign("we-miss-you").title == "We miss you"
    assert settings.campaign("staff-work-anniversary").title == "Staff work anniversary"


def test_a_label_that_is_not_text_is_refused_with_its_campaign(project: Path) -> None:
    _with(project, 'label = "Birthday wishes"', "label = 7")
    with pytest.raises(ConfigError, match=r"\[campaign birthday\] label: .*string"):
        load_settings(project)


def test_import_profiles_load_with_their_columns_defaults_and_date_format(project: Path) -> None:
    section = (
        '\n[import.profile.till]\nkind = "interactions"\n'
        'columns = { "Receipt" = "reference", "Card" = "external_id" }\n'
        'defaults = { kind = "visit" }\ndate_format = "%d/%m/%Y %H:%M"\ngroup_lines = true\n'
    )
    project.write_text(project.read_text(encoding="utf-8") + section, encoding="utf-8")
    [till] = load_settings(project).import_profiles
    assert (till.name, till.kind, till.columns, till.defaults) == (
        "till", "interactions", (("Receipt", "reference"), ("Card", "external_id")), (("kind", "visit"),)
    )
    assert (till.date_format, till.group_lines, till.match_by, till.unmapped) == (
        "%d/%m/%Y %H:%M", True, "external_id", "attributes"
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('kind = "orders"', "mailer.toml: [import.profile.shop] kind: must be one of customers, interactions, "
                            "got 'orders'"),
        ('date_format = "dd/mm/yyyy"',
         """mailer.toml: [import.profile.shop] date_format: expected a strptime format such as "%d/%m/%Y", """
         "got 'dd/mm/yyyy'"),
        ('columns = { "Email" = 3 }', "mailer.toml: [import.profile.shop] columns: 'Email': expected a non-empty "
                                     "string, got 3"),
        ('match_by = "phone"', "mailer.toml: [import.profile.shop] match_by: must be one of external_id, email, "
                              "got 'phone'"),
        ('colums = { "Email" = "email" }', "mailer.toml: [import.profile.shop] colums: unknown key (did you mean "
                                           "'columns'?)"),
    ],
)
def test_a_bad_import_profile_is_one_line_naming_the_key(project: Path, lines: str, message: str) -> None:
    project.write_text(project.read_text(encoding="utf-8") + f"\n[import.profile.shop]\n{lines}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(project)
    assert str(caught.value) == message


def test_a_campaign_names_its_gift_and_carries_the_gift_settings(project: Path) -> None:
    settings = load_settings(project)
    gift = settings.campaign("fifth-anniversary").gift
    assert gift is not None and gift == settings.gift("anniversary-5")
    assert (gift.kind, gift.valid_days, gift.warn_days) == ("pool", 60, 30)
    assert gift.secret == settings.sender.secret  # generated codes are signed with the sender's secret
    assert settings.campaign("customer-anniversary").gift is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('gift = "anniversary-5"', 'gift = "anniversary-50"',
         "mailer.toml: [campaign fifth-anniversary] gift: no [[gift]] named 'anniversary-50' "
         "(did you mean 'anniversary-5'?)"),
        ('kind = "pool"   ', 'kind = "voucher"',
         "mailer.toml: [gift anniversary-5] kind: must be one of pool, generated, got 'voucher'"),
        ('kind = "pool"   ', 'kind = "generated"',
         "mailer.toml: [gift anniversary-5] prefix: a generated gift needs 1-12 capital letters or digits, "
         "starting with a letter, got ''"),
        ('kind = "pool"   ', 'prefix = "NW"\nkind = "pool"',
         "mailer.toml: [gift anniversary-5] prefix: only generated gifts have a prefix"),
        ('label = "a free bag of coffee with your next order"', 'label = ""',
         "mailer.toml: [gift anniversary-5] label: must not be empty"),
        ("valid_days = 60", "valid_days = -1",
         "mailer.toml: [gift anniversary-5] valid_days: must be at least 0, got -1"),
        ("valid_days = 60", 'valid_days = 60\ncode = "SECRET"', "mailer.toml: [gift anniversary-5] code: unknown key"),
    ],
)
def test_a_bad_gift_setting_is_one_line_naming_the_gift_and_key(
    project: Path, old: str, new: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_with(project, old, new))
    assert str(error.value).startswith(message)


def test_two_gifts_with_one_name_are_refused(project: Path) -> None:
    text = project.read_text(encoding="utf-8")
    block = text[text.index("[[gift]]"):text.index("[[campaign]]")]
    project.write_text(text.replace(block, block + block, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[\[gift\]\] name: 'anniversary-5' is used twice"):
        load_settings(project)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('name = "shop"\nkind = "sql"\nurl = "postgresql://shop:hunter2@db/shop"\ncustomers = "SELECT 1"',
         "[source shop] url: holds a password: move the URL to url_env or url_file"),
        ('name = "shop"\nkind = "sql"\nurl = "sqlite:///shop.db"\ncustomers = "DELETE FROM customers"',
         "[source shop] customers: must be a SELECT query (the source is only read)"),
        ('name = "drop"\nkind = "folder"', "[source drop] path: is required: the folder CSV files are dropped into"),
        ('name = "x"\nkind = "ftp"', "[source x] kind: must be one of sql, folder"),
    ],
)
def test_a_bad_source_is_one_line_naming_it(project: Path, source: str, message: str) -> None:
    with project.open("a", encoding="utf-8") as config:
        config.write(f"\n[[source]]\n{source}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(project)
    assert str(caught.value).startswith(f"mailer.toml: {message}")


def test_a_sqlite_source_is_relative_to_the_config_file(project: Path) -> None:
    with project.open("a", encoding="utf-8") as config:
        config.write('\n[[source]]\nname = "shop"\nkind = "sql"\nurl = "sqlite:///shop.db"\ncustomers = "SELECT 1;"\n')
    [source] = load_settings(project).sources
    assert (source.url, source.customers) == (f"sqlite:///{project.parent / 'shop.db'}", "SELECT 1")
