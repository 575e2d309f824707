"""``[webhooks.ses]`` and ``[webhooks.mailgun]``: defaults, and one line naming the key for each mistake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import cli
from mailer.config import ConfigError, load_settings

TOPIC = "arn:aws:sns:eu-west-1:123456789012:mailer-feedback"


def with_lines(project: Path, text: str) -> Path:
    project.write_text(project.read_text(encoding="utf-8") + "\n" + text + "\n", encoding="utf-8")
    return project


def test_no_webhooks_section_means_no_webhooks(project: Path) -> None:
    hooks = load_settings(project).webhooks
    assert (hooks.ses, hooks.mailgun) == (None, None)


def test_webhook_paths_default_to_the_unsubscribe_path_and_sns_certificates_to_amazon_hosts(project: Path) -> None:
    with_lines(project, f'[webhooks.ses]\ntopics = ["{TOPIC}"]\n[webhooks.mailgun]\nsigning_key_env = "MG_KEY"')
    hooks = load_settings(project).webhooks
    assert hooks.ses is not None and hooks.mailgun is not None
    assert (hooks.ses.path, hooks.ses.topics, hooks.ses.max_age) == ("/mailer/hooks/ses", (TOPIC,), timedelta(days=1))
    assert hooks.ses.cert_hosts == ("sns.*.amazonaws.com", "sns.*.amazonaws.com.cn")
    assert (hooks.mailgun.path, hooks.mailgun.max_age) == ("/mailer/hooks/mailgun", timedelta(minutes=5))
    assert "MG_KEY" in repr(hooks.mailgun.signing_key)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("[webhooks.ses]", "[webhooks.ses] topics: is required: the SNS topic ARNs SES publishes to, "
                           'e.g. ["arn:aws:sns:eu-west-1:…"]'),
        ('[webhooks.ses]\ntopics = ["mailer-feedback"]',
         "[webhooks.ses] topics: not an SNS topic ARN: 'mailer-feedback'"),
        (f'[webhooks.ses]\ntopics = ["{TOPIC}"]\npath = "hooks/ses"',
         "[webhooks.ses] path: expected a URL path such as '/mailer/hooks/ses', got 'hooks/ses'"),
        (f'[webhooks.ses]\ntopics = ["{TOPIC}"]\npath = "/mailer/u/x"',
         "[webhooks.ses] path: /mailer/u/x is taken by the unsubscribe endpoint"),
        (f'[webhooks.ses]\ntopics = ["{TOPIC}"]\ncert_hosts = ["*.com"]',
         "[webhooks.ses] cert_hosts: expected a host such as 'sns.*.amazonaws.com', got '*.com'"),
        (f'[webhooks.ses]\ntopics = ["{TOPIC}"]\ncert_hosts = []',
         "[webhooks.ses] cert_hosts: must name at least one host"),
        (f'[webhooks.ses]\ntopics = ["{TOPIC}"]\nmax_age = "forever"',
         "[webhooks.ses] max_age: expected a duration such as \"30m\", \"6h\" or \"3d\", got 'forever'"),
        (f'[webhooks.ses]\ntopic = ["{TOPIC}"]', "[webhooks.ses] topics: is required: the SNS topic ARNs SES publishes "
                                                 'to, e.g. ["arn:aws:sns:eu-west-1:…"]'),
        ("[webhooks.mailgun]", "[webhooks.mailgun] signing_key_env: set signing_key_env or signing_key_file "
                               "(Mailgun's HTTP webhook signing key)"),
        ('[webhooks.mailgun]\nsigning_key = "key-123"',
         "[webhooks.mailgun] signing_key: secrets never live in the file; use signing_key_env or signing_key_file"),
        ('[webhooks.mailgun]\nsigning_key_env = "K"\nmaxage = "1m"',
         "[webhooks.mailgun] maxage: unknown key (did you mean 'max_age'?)"),
        ('[webhooks]\nsendgrid = {}', "[webhooks] sendgrid: unknown key"),
        (f'[webhooks.ses]\ntopics = ["{TOPIC}"]\npath = "/h"\n[webhooks.mailgun]\nsigning_key_env = "K"\npath = "/h"',
         "[webhooks.mailgun] path: /h is already the SES path"),
    ],
)
def test_a_bad_webhook_setting_is_one_line_naming_the_key(project: Path, lines: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(with_lines(project, lines))
    assert str(caught.value) == f"mailer.toml: {message}"


def test_mailer_serve_names_every_webhook_problem_in_one_line_each_and_never_shows_a_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILGUN_TEST_SIGNING_KEY", raising=False)
    (project.parent / "not-a-ca.pem").write_text("not a certificate\n", encoding="utf-8")
    with_lines(
        project,
        f'[webhooks.ses]\ntopics = ["{TOPIC}"]\nca_file = "not-a-ca.pem"\n'
        '[webhooks.mailgun]\nsigning_key_env = "MAILGUN_TEST_SIGNING_KEY"',
    )
    result = CliRunner().invoke(cli, ["--config", str(project), "serve", "--port", "0"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert "error: mailer.toml: [webhooks.mailgun] signing_key_env: environment variable MAILGUN_TEST_SIGNING_KEY " \
        "is not set" in lines, lines
    ca_line = f"error: mailer.toml: [webhooks.ses] ca_file: {project.parent / 'not-a-ca.pem'}: "
    assert any(line.startswith(ca_line) for line in lines), lines


def test_mailer_serve_checks_the_sns_ca_file_again_when_it_mounts_the_webhook(tmp_path: Path) -> None:
    from mailer.web.webhooks import https_fetcher

    with pytest.raises(ConfigError, match=r"^\[webhooks.ses\] ca_file: .*missing.pem: No such file or directory$"):
        https_fetcher(tmp_path / "missing.pem")
