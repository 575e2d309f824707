"""The import's locale column (checked with Babel) and date attributes (validated, and indexed for date occasions)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.contacts.csvfile import ImportFailed
from mailer.contacts.importer import import_customers
from mailer.store.tables import Customer, CustomerDate

HEADER = "external_id,email,customer_since,locale,renewal_date,nickname"


def write(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "c.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def stored(engine: Engine) -> tuple[dict[str, str | None], dict[tuple[int, str], date]]:
    with Session(engine) as session:
        locales = {c.external_id: c.locale for c in session.execute(select(Customer)).scalars()}
        dates = {(d.customer_id, d.attribute): d.value for d in session.execute(select(CustomerDate)).scalars()}
    return locales, dates


def test_locales_are_stored_in_bcp_47_form_and_blank_means_the_sender_default(engine: Engine, tmp_path: Path) -> None:
    import_customers(
        engine,
        write(
            tmp_path,
            "A,a@example.com,2020-01-01,de_AT,,",
            "B,b@example.com,2020-01-01,pt-BR,,",
            "C,c@x.com,2020-01-01,,,",
        ),
    )
    assert stored(engine)[0] == {"A": "de-AT", "B": "pt-BR", "C": None}


def test_a_customer_with_an_unknown_locale_is_a_clear_error_and_nothing_is_imported(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, "A,a@example.com,2020-01-01,de,,", "B,b@example.com,2020-01-01,xx-YY,,")
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, path)
    [error] = caught.value.errors
    assert str(error) == f"{path}:3: locale: unknown locale 'xx-YY': use a BCP 47 tag such as 'de', 'de-AT' or 'pt-BR'"
    assert stored(engine)[0] == {}


def test_a_date_column_a_campaign_names_must_hold_dates(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "A,a@example.com,2020-01-01,,2027-01-05,", "B,b@example.com,2020-01-01,,next spring,")
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, path, date_columns=["renewal_date"])
    [error] = caught.value.errors
    assert str(error) == f"{path}:3: renewal_date: expected a date YYYY-MM-DD, got 'next spring'"
    import_customers(engine, path)  # no campaign reads it: free text stays free text
    assert stored(engine)[1] == {(1, "renewal_date"): date(2027, 1, 5)}


def test_a_date_attribute_added_or_changed_by_a_reimport_is_indexed_and_a_cleared_one_removed(
    engine: Engine, tmp_path: Path
) -> None:
    import_customers(engine, write(tmp_path, "A,a@example.com,2020-01-01,,,", "B,b@example.com,2020-01-01,,,"))
    assert stored(engine)[1] == {}
    import_customers(
        engine, write(tmp_path, "A,a@example.com,2020-01-01,,2027-01-05,", "B,b@x.com,2020-01-01,,2027-02-28,")
    )
    assert stored(engine)[1] == {(1, "renewal_date"): date(2027, 1, 5), (2, "renewal_date"): date(2027, 2, 28)}
    import_customers(engine, write(tmp_path, "A,a@example.com,2020-01-01,,2028-01-05,", "B,b@x.com,2020-01-01,,,"))
    assert stored(engine)[1] == {(1, "renewal_date"): date(2028, 1, 5)}
    with Session(engine) as session:
        customer = session.execute(select(Customer).where(Customer.external_id == "A")).scalar_one()
        assert customer.attributes["renewal_date"] == "2028-01-05"  # templates still read it as written
