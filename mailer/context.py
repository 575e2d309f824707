"""The variables a template sees: ``customer``, ``occasion``, ``company``, ``owner``, ``unsubscribe_url``.

Plain dicts of plain values, so a sandboxed template can read them and do
nothing else. ``VARIABLES`` is the documented set that ``mailer templates
check`` and the marketers' README are held to.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from mailer.config import SenderSettings
from mailer.models import Customer

VARIABLES: dict[str, dict[str, str]] = {
    "customer": {
        "external_id": "your own id for the customer",
        "email": "their address",
        "first_name": "may be empty: use | default(\"there\")",
        "last_name": "may be empty",
        "full_name": "first and last name, or empty",
        "customer_since": "date they became a customer",
        "birthday": "date of birth (year 2000 when unknown) or empty",
        "timezone": "IANA time zone",
        "tags": "list of tags",
        "order_count": "number of orders",
        "lifetime_spend": "total amount spent",
        "interaction_count": "number of interactions",
        "attributes": "extra CSV columns, e.g. customer.attributes.plan",
    },
    "occasion": {
        "kind": "anniversary, birthday, milestone, silence or follow_up",
        "key": "the occasion key",
        "campaign": "the campaign's name",
        "date": "the day it is marked",
        "years": "anniversary: whole years as a customer",
        "age": "birthday: age when the birth year is known, else empty",
    },
    "company": {
        "name": "the sender's company",
        "postal_address": "required in every footer",
        "website": "may be empty",
        "from_address": "the From address",
    },
    "owner": {
        "name": "the account manager, or the company when none",
        "email": "where replies go",
    },
    "unsubscribe_url": {},
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
        "tags": list(customer.tags or []),
        "order_count": customer.order_count,
        "lifetime_spend": customer.lifetime_spend,
        "interaction_count": customer.interaction_count,
        "attributes": dict(customer.attributes or {}),
    }


def owner_view(customer: Customer, sender: SenderSettings) -> dict[str, str]:
    """The person the customer can answer: their account manager, else the company's reply-to."""
    return {
        "name": customer.owner_name or sender.from_name,
        "email": customer.owner_email or sender.reply_to or sender.from_address,
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
) -> dict[str, Any]:
    return {
        "customer": customer_view(customer),
        "occasion": occasion,
        "company": company_view(sender),
        "owner": owner_view(customer, sender),
        "unsubscribe_url": unsubscribe_url,
    }


def occasion_view(kind: str, key: str, campaign: str, due: date, details: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "key": key, "campaign": campaign, "date": due, **details}
