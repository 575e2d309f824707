"""Sender settings shared by the template tests (what `mailer init` writes, minus the file)."""

from __future__ import annotations

from mailer.config import Secret, SenderSettings

SENDER = SenderSettings(
    company="Northwind Coffee Roasters",
    from_address="hello@northwind.example",
    from_name="Northwind Coffee Roasters",
    postal_address="12 Harbour Street, Portsmouth PO1 2AB, United Kingdom",
    unsubscribe_url="https://northwind.example/mailer",
    secret=Secret(env="MAILER_TEST_UNUSED"),
)
