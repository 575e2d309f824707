"""The variables a template sees: ``customer``, ``occasion``, ``company``, ``owner``, ``gift``, ``unsubscribe_url``.

Plain dicts of plain values, so a sandboxed template can read them and do
nothing else. :data:`VARIABLES` is the documented set: ``mailer templates
check`` holds templates to it and ``templates/email/README.md`` is generated
from it (:func:`variables_markdown`), so the two never drift apart.

The built-in sample customers and :func:`sample_occasion` give previews, test
sends and checks realistic data when the store has none to offer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from mailer.config import OCCASION_KINDS, Campaign, SenderSettings
from mailer.store.tables import Customer, month_day


@dataclass(frozen=True)
class Variable:
    """One documented variable: what it holds, an example, and for which occasions it exists.

    ``occasions`` empty means every email has it. ``fields`` are its documented
    sub-variables; ``free`` means any sub-name is allowed (custom CSV columns).
    """

    doc: str
    example: str = ""
    occasions: tuple[str, ...] = ()
    fields: Mapping[str, Variable] = field(default_factory=dict)
    free: bool = False


V = Variable

# The owner's notice about an unhappy answer (templates/email/feedback_notice): its ``occasion`` fields.
_NOTICE = ("feedback_notice",)
_NOTICE_FIELDS: dict[str, Variable] = {
    "answer": V("the answer given, 1 (worst) to the scale", "2", _NOTICE),
    "label": V("the answer's label", "2", _NOTICE),
    "words": V("the answer in words", "2 out of 5", _NOTICE),
    "scale": V("how many answers there were", "5", _NOTICE),
    "comment": V("what the customer wrote, or empty", "The beans arrived crushed.", _NOTICE),
    "answered_at": V("when they answered", "2 December 2026", _NOTICE),
    "asked_campaign": V("the campaign whose email asked", "how-did-we-do", _NOTICE),
    "asked_subject": V("the subject of the email that asked", "How was your order ORD-10482?", _NOTICE),
    "asked_about": V("what the email asked about (its occasion key)", "follow_up:5312", _NOTICE),
    "interactions": V("their latest interactions, newest first: `kind`, `date`, `reference`, `amount`", "", _NOTICE),
    "emails": V("what mailer sent them lately, newest first: `date`, `subject`, `campaign`", "", _NOTICE),
    "handled_url": V("the signed link that marks it handled (appreciation resumes)", "https://…/feedback/…", _NOTICE),
    "feedback_id": V("the answer's number (`mailer feedback resolve ID`)", "17", _NOTICE),
}


VARIABLES: dict[str, Variable] = {
    "customer": V(
        "the person the email is for",
        fields={
            "first_name": V('may be empty: write `{{ customer.first_name | default("there") }}`', "Amelia"),
            "last_name": V("may be empty", "Hughes"),
            "full_name": V("first and last name, or empty", "Amelia Hughes"),
            "email": V("their address", "amelia@example.com"),
            "external_id": V("your own id for the customer", "C00042"),
            "customer_since": V("the day they became a customer", "14 March 2021"),
            "birthday": V("their birthday (year 2000 when the year is unknown), or empty", "2 July 1986"),
            "timezone": V("their time zone, or empty", "Europe/London"),
            "locale": V("their language (BCP 47), or empty for the [sender] locale", "de-AT"),
            "tags": V("their tags, a list", "vip, wholesale"),
            "order_count": V("number of orders so far", "12"),
            "lifetime_spend": V("total amount spent so far", "1,234.50"),
            "interaction_count": V("number of orders, visits, calls… so far", "17"),
            "last_interaction_at": V("when we last heard from them, or empty", "3 September 2026"),
            "attributes": V(
                "extra columns of the customer CSV, e.g. `customer.attributes.favourite_roast`",
                "Harbour Espresso",
                free=True,
            ),
        },
    ),
    "occasion": V(
        "why the email is sent",
        fields={
            "kind": V("anniversary, birthday, milestone, silence, follow_up or date", "anniversary"),
            "date": V(
                "the day the occasion falls on (the email may go out a few days later); for a date occasion, "
                "the attribute's date itself (the renewal day)",
                "23 November 2026",
            ),
            "key": V("the occasion's unique key", "anniversary:2026"),
            "campaign": V("the campaign's name in mailer.toml", "customer-anniversary"),
            "years": V(
                "whole years as a customer (date: years since the attribute's date)", "5", ("anniversary", "date")
            ),
            "age": V("their new age when the birth year is known, else empty", "40", ("birthday",)),
            "metric": V(
                "what was counted: order_count, lifetime_spend, interaction_count or years_as_customer",
                "order_count",
                ("milestone",),
            ),
            "threshold": V("the number reached (write `{{ occasion.threshold | int }}`)", "10", ("milestone",)),
            "days_silent": V("days since we last heard from them", "60", ("silence",)),
            "silent_since": V(
                "the day we last heard from them (or they became a customer)", "24 September 2026", ("silence",)
            ),
            "days_after": V("days between the interaction and this email", "7", ("follow_up",)),
            "attribute": V("the customer column holding the date", "renewal_date", ("date",)),
            "days_until": V(
                "days from the email's due day to the date (negative: the date has passed)", "14", ("date",)
            ),
            "interaction": V(
                "the order, visit or call being followed up",
                occasions=("follow_up",),
                fields={
                    "kind": V("order, support, visit, meeting…", "order"),
                    "date": V("the day it happened", "16 November 2026"),
                    "reference": V("your reference for it, or empty", "ORD-10482"),
                    "amount": V("its amount, or empty (write `{{ occasion.interaction.amount | money }}`)", "42.50"),
                    "id": V("its number in the store", "5312"),
                },
            ),
            **_NOTICE_FIELDS,
        },
    ),
    "company": V(
        "your business, from [sender] in mailer.toml",
        fields={
            "name": V("the company's name", "Northwind Coffee Roasters"),
            "postal_address": V("required in every footer", "12 Harbour Street, Portsmouth"),
            "website": V("may be empty", "https://northwind.example"),
            "from_address": V("the From address", "hello@northwind.example"),
        },
    ),
    "owner": V(
        "the person who signs: the customer's account manager, else the company",
        fields={
            "name": V("their name (the company's when the customer has no account manager)", "Hannah Lee"),
            "email": V("where replies go", "hannah@northwind.example"),
            "is_person": V("true when a named person signs, false when the company does", "true"),
        },
    ),
    "gift": V(
        "the gift the campaign gives with this email, or empty when it gives none: "
        "write `{% if gift %}…{% endif %}`",
        fields={
            "code": V("the customer's own code, given once (a retry carries the same one)", "THANKS-7KQM-4XRT-9HWC"),
            "label": V("what it is, from [[gift]] label in mailer.toml", "10% off your next order"),
            "expires": V("its last good day, or empty (write `{{ gift.expires | date }}`)", "15 July 2026"),
        },
    ),
    "unsubscribe_url": V(
        "the one-click unsubscribe link: required in every email, HTML and text", "https://northwind.example/mailer/u/…"
    ),
    "ask": V(
        'the question of a campaign with `ask = "rating"`: one link per answer (no answers when it asks none)',
        fields={
            "question": V("the question, or empty when the campaign asks none", "How did we do?"),
            "answers": V(
                "the answers, worst first: each has `value` (1, 2…), `label`, `words` (\"4 out of 5\") and `url`",
                "1, 2, 3, 4, 5",
            ),
            "scale": V("how many answers there are (0: the campaign asks nothing)", "5"),
        },
    ),
}



def customer_view(customer: Customer) -> dict[str, Any]:
    full_name = " ".join(p for p in (customer.first_name, customer.last_name) if p)
    return {
        "external_id": customer.external_id,
        "email": customer.email,
        "first_name": customer.first_name or "",
        "last_name": customer.last_name or "",
        "full_name": full_name,
        "customer_since": customer.customer_since,
        "birthday": customer.birthday,
        "timezone": customer.timezone or "",
        "locale": customer.locale or "",
        "tags": list(customer.tags or []),
        "order_count": customer.order_count,
        "lifetime_spend": customer.lifetime_spend,
        "interaction_count": customer.interaction_count,
        "last_interaction_at": customer.last_interaction_at,
        "attributes": dict(customer.attributes or {}),
    }


def owner_view(customer: Customer, sender: SenderSettings) -> dict[str, Any]:
    """The person the customer can answer: their account manager, else the company's reply-to."""
    return {
        "name": customer.owner_name or sender.from_name or sender.company,
        "email": customer.owner_email or sender.reply_to or sender.from_address,
        "is_person": bool(customer.owner_name),
    }


def company_view(sender: SenderSettings) -> dict[str, str]:
    return {
        "name": sender.company,
        "postal_address": sender.postal_address,
        "website": sender.website or "",
        "from_address": sender.from_address,
    }


def template_context(
    customer: Customer,
    occasion: dict[str, Any],
    sender: SenderSettings,
    unsubscribe_url: str,
    ask: dict[str, Any] | None = None,
    *,
    gift: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "customer": customer_view(customer),
        "occasion": occasion,
        "company": company_view(sender),
        "owner": owner_view(customer, sender),
        "gift": gift_variable(gift),
        "unsubscribe_url": unsubscribe_url,
        "ask": ask or {"question": "", "answers": [], "scale": 0},
    }


def gift_variable(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``gift`` variable from what the send log holds (``send_log.gift``); None when there is no gift."""
    if not stored:
        return None
    expires = stored.get("expires")
    return {
        "code": str(stored["code"]),
        "label": str(stored.get("label") or ""),
        "expires": date.fromisoformat(expires) if isinstance(expires, str) else None,
    }


def sample_gift(day: date, label: str = "10% off your next order") -> dict[str, Any]:
    """A gift as a campaign's email would carry it, for previews, test sends and checks (never a real code)."""
    expires = (day + timedelta(days=30)).isoformat()
    return {"name": "sample", "label": label, "code": "SAMPLE-7KQM-4XRT-9HWC", "expires": expires}


def occasion_view(kind: str, key: str, campaign: str, due: date, details: dict[str, Any]) -> dict[str, Any]:
    """The ``occasion`` variable; details stored as JSON in the send log get their dates and amounts back."""
    return {"kind": kind, "key": key, "campaign": campaign, "date": due, **_revive(details)}


def _revive(details: Mapping[str, Any]) -> dict[str, Any]:
    revived: dict[str, Any] = {}
    for name, value in details.items():
        if isinstance(value, Mapping):
            value = _revive(value)
        elif name.endswith("_at") and isinstance(value, str):
            value = _parse_moment(value)
        elif (name == "date" or name.endswith("_since")) and isinstance(value, str):
            with contextlib.suppress(ValueError):  # not a date after all: shown as written
                value = date.fromisoformat(value)
        elif name == "amount" and isinstance(value, str | int | float) and not isinstance(value, bool):
            with contextlib.suppress(InvalidOperation):  # not a number after all: shown as written
                value = Decimal(str(value))
        revived[name] = value
    return revived


def _parse_moment(value: str) -> datetime | str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---- samples for previews, test sends and checks ------------------------------------------------


def _sample(external_id: str, email: str, since: date, **fields: Any) -> Customer:
    return Customer(
        external_id=external_id, email=email, customer_since=since, since_md=month_day(since), **fields
    )


def sample_customers() -> dict[str, Customer]:
    """Built-in customers (never stored): every field set, only an email, and unicode names."""
    return {
        "sample-full": _sample(
            "sample-full",
            "amelia.hughes@example.com",
            date(2021, 3, 14),
            first_name="Amelia",
            last_name="Hughes",
            birthday_month=7,
            birthday_day=2,
            birthday_year=1986,
            timezone="Europe/London",
            tags=["vip"],
            owner_name="Hannah Lee",
            owner_email="hannah@northwind.example",
            attributes={"favourite_roast": "Harbour Espresso"},
            order_count=12,
            lifetime_spend=Decimal("1234.50"),
            interaction_count=17,
            last_interaction_at=datetime(2026, 9, 3, 10, 30, tzinfo=UTC),
        ),
        "sample-email-only": _sample("sample-email-only", "someone@example.com", date(2024, 1, 9)),
        "sample-unicode": _sample(
            "sample-unicode",
            "zoe@example.com",
            date(2019, 2, 28),
            first_name="Zoë",
            last_name="Ólafsdóttir",
            birthday_month=2,
            birthday_day=29,
            timezone="Asia/Shanghai",
            owner_name="王芳",
            owner_email="wang.fang@example.com",
            attributes={"favourite_roast": "Café de Olla"},
            order_count=3,
            lifetime_spend=Decimal("88"),
            interaction_count=3,
        ),
        # A reader of the German templates (Austrian German: the de-AT → de fallback and "Jänner").
        "sample-de": _sample(
            "sample-de",
            "juergen.mueller@example.com",
            date(2020, 1, 15),
            first_name="Jürgen",
            last_name="Müller",
            birthday_month=7,
            birthday_day=2,
            birthday_year=1979,
            timezone="Europe/Vienna",
            locale="de-AT",
            owner_name="Hannah Lee",
            owner_email="hannah@northwind.example",
            attributes={"favourite_roast": "Wiener Melange"},
            order_count=12,
            lifetime_spend=Decimal("1234.50"),
            interaction_count=14,
        ),
    }


def sample_occasion(kind: str, customer: Customer, day: date, campaign: Campaign | None = None) -> dict[str, Any]:
    """A plausible ``occasion`` of ``kind`` for ``customer`` on ``day``, using the campaign's settings when given."""
    if kind == "feedback_notice":
        return occasion_view(kind, "feedback:0:1", "feedback:notice", day, sample_notice(day))
    if kind not in OCCASION_KINDS:
        raise ValueError(f"unknown occasion kind {kind!r}")
    name = campaign.name if campaign else kind
    details: dict[str, Any]
    if kind == "anniversary":
        years = max(1, day.year - customer.customer_since.year)
        details, key = {"years": years}, f"anniversary:{day.year}"
    elif kind == "birthday":
        age = day.year - customer.birthday_year if customer.birthday_year else None
        details, key = {"age": age}, f"birthday:{day.year}"
    elif kind == "milestone":
        metric = campaign.metric if campaign and campaign.metric else "order_count"
        threshold = campaign.thresholds[0] if campaign and campaign.thresholds else 10.0
        details, key = {"metric": metric, "threshold": threshold}, f"milestone:{metric}:{threshold:g}"
    elif kind == "silence":
        days = campaign.after_days[0] if campaign and campaign.after_days else 60
        last = day - timedelta(days=days)
        details, key = {"days_silent": days, "silent_since": last}, f"silence:{last.isoformat()}:{days}"
    elif kind == "date":
        attribute = campaign.attribute if campaign and campaign.attribute else "renewal_date"
        ahead = -campaign.offset_days if campaign else 14
        marked = day + timedelta(days=ahead)
        details = {"attribute": attribute, "date": marked, "days_until": ahead, "years": 1}
        key = f"date:{attribute}:{marked.isoformat()}"
    else:
        days = campaign.after_days[0] if campaign and campaign.after_days else 7
        interaction = {
            "id": 0,
            "kind": (campaign.interaction_kind if campaign and campaign.interaction_kind else "order"),
            "date": day - timedelta(days=days),
            "reference": "ORD-10482",
            "amount": Decimal("42.50"),
        }
        details, key = {"days_after": days, "interaction": interaction}, "follow_up:0"
    return occasion_view(kind, key, name, day, details)


def sample_notice(day: date) -> dict[str, Any]:
    """The details of an owner's notice about an unhappy answer, for previews and checks."""
    return {
        "feedback_id": 17,
        "answer": 2,
        "label": "2",
        "words": "2 out of 5",
        "scale": 5,
        "comment": "The beans arrived crushed and nobody answered my email.",
        "answered_at": datetime.combine(day, datetime.min.time(), UTC).isoformat(),
        "asked_campaign": "how-did-we-do",
        "asked_subject": "How was your order ORD-10482?",
        "asked_about": "follow_up:5312",
        "interactions": [
            {"kind": "order", "date": (day - timedelta(days=9)).isoformat(), "reference": "ORD-10482",
             "amount": "42.50"},
            {"kind": "support", "date": (day - timedelta(days=30)).isoformat(), "reference": "", "amount": ""},
        ],
        "emails": [
            {"date": (day - timedelta(days=2)).isoformat(), "subject": "How was your order ORD-10482?",
             "campaign": "how-did-we-do"},
        ],
        "handled_url": "https://northwind.example/mailer/feedback/CHECK-TOKEN",
    }


# ---- the marketers' reference ---------------------------------------------------------------------


def variables_markdown() -> str:
    """The variables section of ``templates/email/README.md``, generated from :data:`VARIABLES`."""
    lines: list[str] = []

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def rows(prefix: str, variables: Mapping[str, Variable], inherited: tuple[str, ...]) -> None:
        for name, variable in variables.items():
            path = f"{prefix}{name}"
            occasions = variable.occasions or inherited
            example = f"`{cell(variable.example)}`" if variable.example else ""
            where = ", ".join(occasions) if occasions else "all"
            lines.append(f"| `{{{{ {path} }}}}` | {cell(variable.doc)} | {example} | {where} |")
            rows(f"{path}.", variable.fields, occasions)

    for name, variable in VARIABLES.items():
        lines.append(f"### `{name}`: {variable.doc}")
        lines.append("")
        if variable.fields:
            lines += ["| write | what it holds | example | in emails for |", "| --- | --- | --- | --- |"]
            rows(f"{name}.", variable.fields, variable.occasions)
        else:
            lines.append(f"Write `{{{{ {name} }}}}`, for example `{cell(variable.example)}`.")
        lines.append("")
    return "\n".join(lines)
