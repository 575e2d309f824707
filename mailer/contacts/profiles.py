"""Built-in import profiles for the exports shops download, and finding a profile by name.

Each built-in profile follows the platform's documented export as downloaded, so nobody
renames a column by hand:

- ``shopify-customers``: Shopify admin, Customers, Export (CSV for Excel, Numbers or other
  spreadsheet programs): ``Customer ID, First Name, Last Name, Email, Accepts Email Marketing,
  Default Address ..., Phone, Accepts SMS Marketing, Total Spent, Total Orders, Note, Tax Exempt,
  Tags``. It has no sign-up date, so customer_since comes from the first order.
- ``shopify-orders``: Shopify admin, Orders, Export: one line per order item; the order's own
  fields (``Total``, ``Financial Status`` ...) on its first line; ``Created at`` as
  ``2024-03-05 14:22:01 -0500``; no customer id, so the customer is found by ``Email``.
- ``woocommerce-customers``: WooCommerce, Customer/Order/Coupon Export, Customers, default CSV
  format: ``customer_id, first_name, last_name, email, date_registered, billing_..., shipping_...``;
  guests have ``customer_id`` 0 and are known by their address.

``--profile shopify`` (or ``woocommerce``) picks the platform's profile for the import's kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mailer.config import ImportProfile, Settings
from mailer.config.settings import suggest
from mailer.contacts.csvfile import ImportFailed, RowError, header_row
from mailer.contacts.mapping import Layout

BUILT_IN = (
    ImportProfile(
        name="shopify-customers",
        kind="customers",
        columns=(
            ("Customer ID", "external_id"),
            ("Email", "email"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Accepts Email Marketing", "subscribed"),
            ("Accepts Marketing", "subscribed"),  # the name in exports before 2022
            ("Tags", "tags"),
            ("Default Address Country Code", "country"),
            ("Default Address Company", "company"),
        ),
        tags_separator=",",
        unmapped="ignore",
        without_email="skip",
        origin="built-in",
    ),
    ImportProfile(
        name="shopify-orders",
        kind="interactions",
        columns=(
            ("Name", "reference"),
            ("Email", "email"),
            ("Created at", "occurred_at"),
            ("Total", "amount"),
        ),
        defaults=(("kind", "order"),),
        date_format="%Y-%m-%d %H:%M:%S %z",
        match_by="email",
        group_lines=True,
        unmapped="ignore",
        without_email="skip",
        origin="built-in",
    ),
    ImportProfile(
        name="woocommerce-customers",
        kind="customers",
        columns=(
            ("customer_id", "external_id"),
            ("email", "email"),
            ("billing_email", "email"),
            ("first_name", "first_name"),
            ("last_name", "last_name"),
            ("date_registered", "customer_since"),
            ("billing_country", "country"),
            ("billing_company", "company"),
        ),
        date_format="%Y-%m-%d %H:%M:%S",
        unmapped="ignore",
        guest_ids=("0",),
        origin="built-in",
    ),
)


# A platform's short name → its profile for each kind of import.
PLATFORMS = {
    "shopify": {"customers": "shopify-customers", "interactions": "shopify-orders"},
    "woocommerce": {"customers": "woocommerce-customers"},
}


def profile_names(settings: Settings | None) -> list[str]:
    configured = [p.name for p in settings.import_profiles] if settings else []
    return sorted({*configured, *(p.name for p in BUILT_IN), *PLATFORMS})


def find_profile(kind: str, name: str, settings: Settings | None, file: Path) -> ImportProfile:
    """The profile called ``name`` for this kind of import; raises ImportFailed in one line naming the file's headers.

    A profile in mailer.toml wins over a built-in one of the same name.
    """
    configured = {p.name: p for p in settings.import_profiles} if settings else {}
    built_in = {p.name: p for p in BUILT_IN}
    platform = PLATFORMS.get(name, {})
    if name not in configured and name in PLATFORMS:
        if kind not in platform:
            others = ", ".join(platform.values())
            raise _refuse(file, f"no {name} profile for {kind} (there is {others})")
        name = platform[kind]
    profile = configured.get(name) or built_in.get(name)
    if profile is None:
        names = profile_names(settings)
        hint = suggest(name, names)
        raise _refuse(file, f"unknown import profile {name!r}{hint}; profiles: {', '.join(names)}")
    if profile.kind is not None and profile.kind != kind:
        raise _refuse(file, f"profile {name!r} is for {profile.kind}: use `mailer import {profile.kind}`")
    return profile


def layout_for(
    kind: str, file: Path, *, profile: str | None, maps: Sequence[tuple[str, str]], settings: Settings | None
) -> Layout:
    """The mapping of one import: a profile by name and/or ``--map`` pairs, or the file's own mailer header."""
    chosen = find_profile(kind, profile, settings, file) if profile else None
    return Layout(kind, chosen, tuple(maps))


def _refuse(file: Path, problem: str) -> ImportFailed:
    try:
        listing = f"; the file has: {', '.join(header_row(file))}"
    except (OSError, StopIteration, UnicodeDecodeError):
        listing = ""
    return ImportFailed([RowError(str(file), 1, "profile", problem + listing)])
