"""``[metrics]``, ``[alerts]`` and ``[[webhook]]``: defaults, and one line naming the key for each mistake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mailer.config import ConfigError, load_settings
from mailer.config.settings import EVENT_KINDS


def with_lines(project: Path, text: str) -> Path:
    project.write_text(project.read_text(encoding="utf-8") + "\n" + text + "\n", encoding="utf-8")
    return project


def test_nothing_configured_means_open_metrics_no_alerts_no_webhooks(project: Path) -> None:
    watch = load_settings(project).watch
    assert watch.metrics.enabled and not watch.metrics.token.is_set
    assert not watch.alerts.configured and watch.webhooks == ()


def test_alerts_and_a_webhook_are_read(project: Path) -> None:
    with_lines(project, '[alerts]\nwebhook_url_env = "HOOK"\nemail = "Ops@Example.com"\n'
                        '[[webhook]]\nname = "crm"\nurl_file = "crm-url"\nsecret_env = "CRM_SECRET"\n'
                        'events = ["sent", "bounced"]\nmax_age = "1d"')
    watch = load_settings(project).watch
    assert watch.alerts.configured and watch.alerts.email == ("Ops@example.com",)
    (hook,) = watch.webhooks
    assert (hook.name, hook.events, hook.max_age) == ("crm", ("sent", "bounced"), timedelta(days=1))
    assert hook.url.file == project.parent / "crm-url"


def test_a_webhook_takes_every_event_kind_by_default(project: Path) -> None:
    with_lines(project, '[[webhook]]\nname = "crm"\nurl_env = "U"\nsecret_env = "S"')
    assert load_settings(project).watch.webhooks[0].events == EVENT_KINDS


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('[alerts]\nwebhook_url = "https://hooks.slack.com/x"',
         "[alerts] webhook_url: secrets never live in the file; use webhook_url_env or webhook_url_file"),
        ('[alerts]\nemail = ["not an address"]', "[alerts] email: not a valid address"),
        ('[[webhook]]\nname = "crm"\nsecret_env = "S"', "[webhook crm] url_env: set url_env or url_file"),
        ('[[webhook]]\nname = "crm"\nurl_env = "U"', "[webhook crm] secret_env: set secret_env or secret_file"),
        ('[[webhook]]\nname = "crm"\nurl_env = "U"\nsecret_env = "S"\nevents = ["sentt"]',
         "[webhook crm] events: unknown event 'sentt' (did you mean 'sent'?)"),
        ('[[webhook]]\nname = "a"\nurl_env = "U"\nsecret_env = "S"\n[[webhook]]\nname = "a"\nurl_env = "U"\n'
         'secret_env = "S"', "[[webhook]] name: 'a' is used twice"),
        ("[metrics]\ntoken = \"x\"", "[metrics] token: secrets never live in the file"),
        ("[metrics]\nenable = false", "[metrics] enable: unknown key (did you mean 'enabled'?)"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(project: Path, lines: str, message: str) -> None:
    with_lines(project, lines)
    with pytest.raises(ConfigError) as caught:
        load_settings(project)
    assert message in str(caught.value) and "\n" not in str(caught.value)
