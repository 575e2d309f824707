"""``mailer init``: scaffold a working project (config, templates, sample data, secret, store)."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
from datetime import date
from pathlib import Path

from mailer.config import CONFIG_NAME
from mailer.contacts import sample
from mailer.errors import MailerError

SECRET_FILE = ".mailer-secret"


def _shipped_templates() -> Path:
    """The default templates: the source tree's (a checkout or editable install), else the installed copy."""
    source = Path(__file__).resolve().parent.parent / "templates" / "email"
    if source.is_dir():
        return source
    spec = importlib.util.find_spec("mailer_templates")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "email").is_dir():
            return Path(location) / "email"
    return source


SHIPPED_TEMPLATES = _shipped_templates()

CONFIG_TEMPLATE = """\
# mailer configuration. Every key is documented in the README; secrets never live here.

[store]
url = "sqlite:///mailer.db"            # postgresql+psycopg://user@host/db for several workers

[sender]
company = "Northwind Coffee Roasters"
from_address = "hello@northwind.example"
from_name = "Northwind Coffee Roasters"
reply_to = "hello@northwind.example"   # used when a customer has no account manager
postal_address = "12 Harbour Street, Portsmouth PO1 2AB, United Kingdom"
website = "https://northwind.example"
unsubscribe_url = "https://northwind.example/mailer"   # where `mailer serve` is reachable
secret_file = "{secret_file}"          # signs unsubscribe links; or secret_env = "MAILER_SECRET"
timezone = "Europe/London"             # for customers without a time zone of their own
locale = "en"                          # the language of the default templates (BCP 47: en, de, de-AT…)
# bounce_address = "bounces@northwind.example"   # MAIL FROM, where bounces go (default: from_address)
# verp = true                          # MAIL FROM bounces+<message ref>@…, so every bounce names its message

[transport]
kind = "maildir"                       # "smtp" for real delivery
path = "outbox"                        # every message becomes a real .eml file here
# kind = "smtp"
# host = "smtp.example.com"
# port = 587
# security = "starttls"                # or "tls" (implicit, port 465) or "none"
# username = "mailer"
# password_env = "SMTP_PASSWORD"
# timeout = 30
# retry_initial = "30m"
# retry_max_age = "3d"
# connections = 2                      # SMTP sessions in parallel, for big days

[schedule]
passes = ["5 * * * *"]                 # each pass sends what is due inside its recipient's window
retry_every = "5m"

[policy]
min_days_between = 7                   # at most one appreciation email per customer per 7 days
window_start = "09:00"                 # recipient's local time
window_end = "17:00"
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat"]
catch_up_days = 3                      # occasions missed while down are sent if at most 3 days late

[render]
templates = "templates/email"
inliner = "premailer"

[[campaign]]
name = "customer-anniversary"
occasion = "anniversary"
template = "anniversary"
priority = 30
tags_none = ["staff"]
label = "Anniversary thank-yous"        # what customers read on the preference page (default: from the name)

[[campaign]]
name = "staff-work-anniversary"        # staff are "internal customers": same occasion, own segment and words
occasion = "anniversary"
template = "staff_anniversary"
priority = 30
tags_any = ["staff"]

[[campaign]]
name = "birthday"
occasion = "birthday"
template = "birthday"
priority = 40
label = "Birthday wishes"

[[campaign]]
name = "tenth-order"
occasion = "milestone"
metric = "order_count"
thresholds = [10, 25, 50, 100]
template = "milestone"
priority = 20
tags_none = ["staff"]

[[campaign]]
name = "big-spender"
occasion = "milestone"
metric = "lifetime_spend"
thresholds = [500, 1000, 2500]         # the highest one crossed is sent, the lower ones logged as superseded
template = "milestone"
priority = 25
tags_none = ["staff"]

[[campaign]]
name = "we-miss-you"
occasion = "silence"
after_days = [60, 120]
template = "silence"
priority = 10
tags_none = ["staff"]

[[campaign]]
name = "how-did-we-do"
occasion = "follow_up"
after_days = 7
interaction_kind = "order"
template = "follow_up"
priority = 5
tags_none = ["staff"]
"""


def init_project(directory: Path, today: date, *, customers: int = 300) -> Path:
    """Create a project in ``directory`` (which must not hold a mailer.toml yet); returns the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / CONFIG_NAME
    if config.exists():
        raise MailerError(f"{config}: already exists; not overwriting")
    if not SHIPPED_TEMPLATES.is_dir():
        raise MailerError(f"{SHIPPED_TEMPLATES}: the shipped templates are missing from this installation")
    templates = directory / "templates" / "email"
    if not templates.exists():
        shutil.copytree(SHIPPED_TEMPLATES, templates, ignore=shutil.ignore_patterns("__pycache__"))
    secret = directory / SECRET_FILE
    if not secret.exists():
        # 0600 from the start: the secret is never world-readable, not even for a moment.
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    data = directory / "data"
    data.mkdir(exist_ok=True)
    sample.write_sample_data(data / "customers.csv", data / "interactions.csv", today, customers)
    config.write_text(CONFIG_TEMPLATE.format(secret_file=SECRET_FILE), encoding="utf-8")
    return config
