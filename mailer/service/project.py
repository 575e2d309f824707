"""``mailer init``: scaffold a working project (config, templates, sample data, secret, store)."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from mailer.config import CONFIG_NAME, Settings
from mailer.contacts import giftpool, sample
from mailer.errors import MailerError
from mailer.outbox import gifts

SECRET_FILE = ".mailer-secret"
DEMO_GIFT = "anniversary-5"  # the pool of the sample project's 5th-anniversary campaign


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
unhappy_pause_days = 30                # after an unhappy answer, notes wait for a person at most this long

[render]
templates = "templates/email"
inliner = "premailer"

# A gift with the thanks: every 5th-anniversary email carries its own code from the shop's pool
# (`mailer gifts import anniversary-5 FILE.csv`); `mailer gifts` shows what is left, `mailer status` warns early.
[[gift]]
name = "anniversary-5"
label = "a free bag of coffee with your next order"
kind = "pool"                          # or "generated" (with prefix = "THANKS"): codes made by mailer
valid_days = 60

[[campaign]]
name = "customer-anniversary"
occasion = "anniversary"
years = [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 25, 30, 40, 50]   # the 5th: below
template = "anniversary"
priority = 30
tags_none = ["staff"]
label = "Anniversary thank-yous"        # what customers read on the preference page (default: from the name)

[[campaign]]
name = "fifth-anniversary"
occasion = "anniversary"
years = [5]
template = "anniversary"
priority = 30
tags_none = ["staff"]
gift = "anniversary-5"

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
ask = "rating"                         # one-click answers in the email, 1 (poor) to 5 (excellent)
scale = 5                              # or labels, worst first: ["Not good", "Fine", "Great"]
unhappy_at_most = 2                    # 1 or 2 goes to the customer's account owner

[feedback]
link_max_age = "60d"                   # answer links older than this are refused
count_clicks = false                   # true: also count the click itself when it does not look like a scanner
comment_is_unhappy = false             # true: every comment goes to a person, whatever the answer
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
    sample.write_gift_codes(data / f"{DEMO_GIFT}-codes.csv", today)
    config.write_text(CONFIG_TEMPLATE.format(secret_file=SECRET_FILE), encoding="utf-8")
    return config


def fill_sample_pools(
    engine: Engine, settings: Settings, data: Path, today: date, now: datetime
) -> list[giftpool.PoolImport]:
    """Import ``data/<gift>-codes.csv`` into each pooled gift that has never had a code (a second run adds none)."""
    with Session(engine) as session:
        counted = gifts.counts(session, settings.gifts, today)
    filled = []
    for pool in counted:
        codes = data / f"{pool.name}-codes.csv"
        if pool.left == pool.given == pool.expired == pool.returned == 0 and codes.exists():
            filled.append(giftpool.import_codes(engine, pool.name, codes, today, now))
    return filled
