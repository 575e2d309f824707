"""Shop exports as downloaded: built-in profiles, column mapping, consent, customer_since from the first order."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import store
from mailer.cli import cli
from mailer.config import ImportProfile, Settings, load_settings
from mailer.contacts import optout
from mailer.contacts.csvfile import ImportFailed
from mailer.contacts.importer import ImportReport, import_customers, import_interactions
from mailer.contacts.mapping import Layout
from mailer.contacts.profiles import find_profile, layout_for
from mailer.store.tables import Customer, Interaction

SHOPS = Path(__file__).resolve().parent.parent / "support" / "data" / "shops"


def shop_file(name: str) -> Path:
    return SHOPS / name


def other_store(tmp_path: Path) -> Engine:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    store.create_schema(engine)
    return engine


def profile(kind: str, name: str, file: Path, settings: Settings | None = None) -> Layout:
    return layout_for(kind, file, profile=name, maps=[], settings=settings)


def snapshot(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What the store holds about people and their orders, without row ids, clocks or file names."""
    with Session(engine) as session:
        customers = session.execute(select(Customer).order_by(Customer.external_id)).scalars().all()
        people = [
            (
                c.external_id, c.email, c.first_name, c.last_name, c.customer_since, c.since_md,
                c.customer_since_from, c.tags, c.attributes, c.order_count, c.lifetime_spend, c.interaction_count,
                c.last_interaction_at, c.suppressed_at is not None, (c.suppressed_reason or "").split(":")[0],
            )
            for c in customers
        ]
        ids = {c.id: c.external_id for c in customers}
        interactions = session.execute(select(Interaction).order_by(Interaction.reference)).scalars().all()
        orders = [(ids[i.customer_id], i.kind, i.occurred_at, i.amount, i.reference) for i in interactions]
    return people, orders


def customer(engine: Engine, external_id: str) -> Customer:
    with Session(engine) as session:
        return session.execute(select(Customer).where(Customer.external_id == external_id)).scalar_one()


def import_shopify(engine: Engine, zone: str = "Europe/London") -> tuple[ImportReport, ImportReport]:
    customers = shop_file("shopify_customers_export.csv")
    orders = shop_file("shopify_orders_export.csv")
    first = import_customers(
        engine, customers, layout=profile("customers", "shopify", customers), default_zone=zone
    )
    second = import_interactions(
        engine, orders, layout=profile("interactions", "shopify", orders), default_zone=zone
    )
    return first, second


def test_shopify_exports_give_the_same_store_as_the_same_data_in_mailers_csv(engine: Engine, tmp_path: Path) -> None:
    customers_report, orders_report = import_shopify(engine)
    assert customers_report.summary() == (
        "shopify_customers_export.csv: 4 rows, imported 4 new, 0 updated; customer_since pending first order: 4; "
        "suppressed (the file says no): 2"
    )
    assert orders_report.summary() == (
        "shopify_orders_export.csv: 8 lines, 5 orders, imported 5 new, 0 updated; customer_since from first order: 4"
    )
    plain = other_store(tmp_path)
    import_customers(plain, shop_file("shopify_as_mailer_customers.csv"), default_zone="Europe/London")
    import_interactions(plain, shop_file("shopify_as_mailer_interactions.csv"), default_zone="Europe/London")
    assert snapshot(engine) == snapshot(plain)

    ann = customer(engine, "7012345678901")
    # Two orders, the first of two lines and the second of three: amounts summed per order.
    assert (ann.order_count, str(ann.lifetime_spend), ann.interaction_count) == (2, "179.90", 2)
    assert (ann.customer_since, ann.customer_since_from) == (date(2023, 3, 5), "first_order")
    assert ann.tags == ["vip", "wholesale"]
    assert ann.attributes == {"country": "US", "company": "Lee & Daughters"}  # the rest of the export is left out
    # 2024-07-04 23:30 -0700 is already 5 July in London, the shop's zone.
    assert customer(engine, "7012345678904").customer_since == date(2024, 7, 5)


def test_reimporting_the_same_shopify_exports_changes_nothing(engine: Engine) -> None:
    import_shopify(engine)
    before = snapshot(engine)
    customers_report, orders_report = import_shopify(engine)
    assert (customers_report.inserted, customers_report.updated, customers_report.unchanged) == (0, 0, 4)
    assert (orders_report.inserted, orders_report.unchanged) == (0, 5)
    assert snapshot(engine) == before


def test_woocommerce_export_gives_the_same_store_as_mailers_csv_and_guests_are_known_by_address(
    engine: Engine, tmp_path: Path
) -> None:
    export = shop_file("woocommerce_customers_export.csv")
    report = import_customers(engine, export, layout=profile("customers", "woocommerce", export))
    assert (report.inserted, report.since_pending) == (4, 0)
    plain = other_store(tmp_path)
    import_customers(plain, shop_file("woocommerce_as_mailer_customers.csv"))
    assert snapshot(engine) == snapshot(plain)
    guest = customer(engine, "guest:gita.rao@example.in")
    assert (guest.customer_since, guest.attributes["country"]) == (date(2022, 9, 30), "IN")
    assert customer(engine, "15").since_md == 229


def test_consent_no_suppresses_with_source_import_and_the_line_visible_in_suppressions(
    project: Path, engine: Engine
) -> None:
    runner = CliRunner()
    export = shop_file("shopify_customers_export.csv")
    result = runner.invoke(cli, ["--config", str(project), "import", "customers", str(export), "--profile", "shopify"])
    assert result.exit_code == 0, result.output
    listing = runner.invoke(cli, ["--config", str(project), "suppressions", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(listing.stdout)))
    # Bruno's row starts on line 3 (his note spans lines 3-4); Dev's is on line 6.
    assert sorted((r["customer"], r["state"], r["source"], r["source/reason"]) for r in rows) == [
        ("7012345678902", "suppressed", "import", "import: shopify_customers_export.csv:3: no marketing consent"),
        ("7012345678904", "suppressed", "import", "import: shopify_customers_export.csv:6: no marketing consent"),
    ]
    assert customer(engine, "7012345678901").suppressed_at is None


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def consent_file(tmp_path: Path, name: str, answer: str) -> Path:
    return write(tmp_path, name, ["external_id,email,subscribed", f"K1,kim@example.com,{answer}"])


def test_a_later_yes_does_not_lift_an_unsubscribe_made_in_mailer(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, consent_file(tmp_path, "first.csv", "yes"))
    optout.unsubscribe_address(engine, "kim@example.com", optout.Source.PAGE)
    report = import_customers(engine, consent_file(tmp_path, "second.csv", "yes"))
    assert report.summary().endswith("kept unsubscribed (they unsubscribed through mailer): 1")
    kim = customer(engine, "K1")
    assert (kim.unsubscribed_at is not None, kim.unsubscribe_source) == (True, "page")


def test_a_later_yes_lifts_an_opt_out_that_only_an_import_made(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, consent_file(tmp_path, "first.csv", "no"))
    assert customer(engine, "K1").suppressed_reason == "import: first.csv:2: no marketing consent"
    report = import_customers(engine, consent_file(tmp_path, "second.csv", "Yes"))
    assert "opted in again (the file says yes after an import's no): 1" in report.summary()
    assert customer(engine, "K1").suppressed_at is None


def test_the_customers_own_unsubscribe_after_an_imports_no_is_theirs_and_survives_a_later_yes(
    engine: Engine, tmp_path: Path
) -> None:
    import_customers(engine, consent_file(tmp_path, "first.csv", "no"))
    optout.unsubscribe_address(engine, "kim@example.com", optout.Source.ONE_CLICK)
    import_customers(engine, consent_file(tmp_path, "second.csv", "yes"))
    kim = customer(engine, "K1")
    assert (kim.suppressed_at, kim.unsubscribe_source) == (None, "one-click")  # the import's own opt-out is lifted


def test_an_empty_consent_cell_changes_nothing_and_a_bad_one_is_a_bad_row(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, consent_file(tmp_path, "first.csv", "no"))
    import_customers(engine, consent_file(tmp_path, "second.csv", ""))
    assert customer(engine, "K1").suppressed_at is not None
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, consent_file(tmp_path, "third.csv", "maybe"))
    assert str(caught.value).endswith("third.csv:2: subscribed: expected yes or no, got 'maybe'")


def test_a_dry_run_counts_the_opt_outs_and_changes_nothing(engine: Engine) -> None:
    export = shop_file("shopify_customers_export.csv")
    report = import_customers(engine, export, layout=profile("customers", "shopify", export), dry_run=True)
    assert "would import 4 new" in report.summary() and "suppressed (the file says no): 2" in report.summary()
    with Session(engine) as session:
        assert session.execute(select(Customer)).first() is None


def test_an_earlier_order_found_later_moves_customer_since_and_the_anniversary_with_it(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    runner = CliRunner()

    def mailer(*args: str) -> str:
        result = runner.invoke(cli, ["--config", str(project), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    mailer("import", "customers", str(shop_file("shopify_customers_export.csv")), "--profile", "shopify")
    summary = mailer("import", "interactions", str(shop_file("shopify_orders_export.csv")), "--profile", "shopify")
    assert "customer_since from first order: 4" in summary
    assert "2027-03-05  Fri      customer-anniversary  1" in mailer("plan", "--from", "2027-03-05", "--days", "1")

    older = write(tmp_path, "older_orders.csv", [
        "Name,Email,Financial Status,Total,Created at,Lineitem quantity,Lineitem name",
        "#0907,ann.lee@example.com,paid,12.00,2021-11-02 10:00:00 -0400,1,Sample pack",
    ])
    summary = mailer("import", "interactions", str(older), "--profile", "shopify-orders")
    assert summary.strip() == (
        "older_orders.csv: 1 lines, 1 orders, imported 1 new, 0 updated; customer_since from first order: 1"
    )
    ann = customer(engine, "7012345678901")
    assert (ann.customer_since, ann.order_count) == (date(2021, 11, 2), 3)
    assert "customer-anniversary" not in mailer("plan", "--from", "2027-03-05", "--days", "1")
    assert "2027-11-02  Tue      customer-anniversary  1" in mailer("plan", "--from", "2027-11-02", "--days", "1")


def test_a_customer_since_the_file_gives_is_never_moved_by_orders(engine: Engine, tmp_path: Path) -> None:
    given = ["external_id,email,customer_since", "K1,kim@example.com,2024-01-01"]
    import_customers(engine, write(tmp_path, "c.csv", given))
    import_interactions(engine, write(tmp_path, "i.csv", ["external_id,kind,occurred_at", "K1,order,2020-05-05"]))
    kim = customer(engine, "K1")
    assert (kim.customer_since, kim.customer_since_from) == (date(2024, 1, 1), None)


def test_a_refund_is_no_first_order(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "c.csv", ["external_id,email", "K1,kim@example.com"]))
    import_interactions(engine, write(tmp_path, "i.csv", [
        "external_id,kind,occurred_at,amount,reference", "K1,order,2022-05-05,-10,R1", "K1,order,2023-06-06,30,O1",
    ]))
    assert customer(engine, "K1").customer_since == date(2023, 6, 6)


def test_the_order_line_of_an_unknown_customer_is_a_bad_row(engine: Engine, tmp_path: Path) -> None:
    import_shopify(engine)
    orders = write(tmp_path, "orders.csv", [
        "Name,Email,Total,Created at",
        "#2001,nobody@example.com,10.00,2024-05-01 10:00:00 +0000",
    ])
    with pytest.raises(ImportFailed) as caught:
        import_interactions(engine, orders, layout=profile("interactions", "shopify", orders))
    assert str(caught.value).endswith("orders.csv:2: Email (email): no customer with email 'nobody@example.com'")


def test_a_bad_line_rejects_its_whole_order_and_skip_invalid_writes_all_its_lines_aside(
    engine: Engine, tmp_path: Path
) -> None:
    import_shopify(engine)
    orders = write(tmp_path, "orders.csv", [
        "Name,Email,Total,Created at",
        "#3001,ann.lee@example.com,30.00,2024-05-01 10:00:00 +0000",
        "#3001,ann.lee@example.com,abc,2024-05-01 10:00:00 +0000",
        "#3002,chloe@example.fr,5.00,2024-05-02 10:00:00 +0000",
    ])
    layout = profile("interactions", "shopify", orders)
    with pytest.raises(ImportFailed) as caught:
        import_interactions(engine, orders, layout=layout)
    assert [str(e).rpartition("/")[2] for e in caught.value.errors] == [
        "orders.csv:2: order: line 3 of this order is bad",
        "orders.csv:3: Total (amount): expected a decimal amount, got 'abc'",
    ]
    report = import_interactions(engine, orders, layout=profile("interactions", "shopify", orders), skip_invalid=True)
    assert (report.inserted, len(report.rejected)) == (1, 2)
    rejected = (tmp_path / "orders.csv.rejected.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[0] for line in rejected[1:]] == ["#3001", "#3001"]


def test_an_orders_lines_must_be_together(engine: Engine, tmp_path: Path) -> None:
    import_shopify(engine)
    orders = write(tmp_path, "orders.csv", [
        "Name,Email,Total,Created at",
        "#3001,ann.lee@example.com,30.00,2024-05-01 10:00:00 +0000",
        "#3002,chloe@example.fr,5.00,2024-05-02 10:00:00 +0000",
        "#3001,ann.lee@example.com,,2024-05-01 10:00:00 +0000",
    ])
    with pytest.raises(ImportFailed) as caught:
        import_interactions(engine, orders, layout=profile("interactions", "shopify", orders))
    assert str(caught.value).endswith(
        "orders.csv:4: Name (reference): order '#3001' continues here but its other lines end before line 4, "
        "from line 2: keep an order's lines together"
    )


def test_a_date_in_the_wrong_format_names_the_files_column(engine: Engine, tmp_path: Path) -> None:
    import_shopify(engine)
    orders = write(tmp_path, "orders.csv", ["Name,Email,Total,Created at", "#3001,ann.lee@example.com,3,05/01/2024"])
    with pytest.raises(ImportFailed) as caught:
        import_interactions(engine, orders, layout=profile("interactions", "shopify", orders))
    assert str(caught.value).endswith(
        "orders.csv:2: Created at (occurred_at): expected a date like '2024-03-05 14:22:01 +0000' "
        "(%Y-%m-%d %H:%M:%S %z), got '05/01/2024'"
    )


SHOP_HEADER = "Kundennummer,E-Mail,Vorname,Kunde seit,Newsletter,Lieblingskaffee"


def test_map_options_read_any_header_and_unmapped_columns_stay_attributes(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "kunden.csv", [SHOP_HEADER, "K-1,jo@example.de,Jo,2020-05-17,nein,Mokka"])
    maps = [("Kundennummer", "external_id"), ("E-Mail", "email"), ("Kunde seit", "customer_since"),
            ("Vorname", "first_name")]
    import_customers(engine, path, layout=layout_for("customers", path, profile=None, maps=maps, settings=None))
    jo = customer(engine, "K-1")
    assert (jo.email, jo.first_name, jo.customer_since) == ("jo@example.de", "Jo", date(2020, 5, 17))
    assert jo.attributes == {"Newsletter": "nein", "Lieblingskaffee": "Mokka"}


def test_a_profile_in_mailer_toml_maps_columns_defaults_and_dates(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    with project.open("a", encoding="utf-8") as config:
        config.write(
            '\n[import.profile.kasse]\nkind = "customers"\n'
            'columns = { "Kundennummer" = "external_id", "E-Mail" = "email", "Kunde seit" = "customer_since", '
            '"Newsletter" = "subscribed" }\n'
            'defaults = { timezone = "Europe/Berlin" }\ndate_format = "%d.%m.%Y"\nunmapped = "ignore"\n'
        )
    path = write(tmp_path, "kunden.csv", [SHOP_HEADER, "K-1,jo@example.de,Jo,17.05.2020,no,Mokka"])
    result = CliRunner().invoke(
        cli, ["--config", str(project), "import", "customers", str(path), "--profile", "kasse", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:8] == [
        "mapping:",
        f"profile kasse ({project.name}: [import.profile.kasse])",
        "  Kundennummer -> external_id",
        "  E-Mail       -> email",
        "  Kunde seit   -> customer_since",
        "  Newsletter   -> subscribed",
        "  (default)    -> timezone = 'Europe/Berlin'",
        "  ignored: Vorname, Lieblingskaffee",
    ]
    assert "first rows as mailer reads them:" in result.stdout
    assert (
        "  line 2: external_id='K-1', email='jo@example.de', customer_since='2020-05-17', subscribed='no', "
        "timezone='Europe/Berlin'"
    ) in result.stdout
    result = CliRunner().invoke(cli, ["--config", str(project), "import", "customers", str(path), "--profile", "kasse"])
    assert result.exit_code == 0, result.output
    jo = customer(engine, "K-1")
    assert (jo.customer_since, jo.timezone, jo.suppressed_reason) == (
        date(2020, 5, 17), "Europe/Berlin", "import: kunden.csv:2: no marketing consent"
    )


def run_import(project: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["--config", str(project), "import", *args])
    return result.exit_code, result.stderr.splitlines()


def test_an_unmapped_required_column_is_one_line_with_the_headers_and_a_guess(project: Path) -> None:
    export = shop_file("shopify_customers_export.csv")
    code, lines = run_import(project, "customers", str(export), "--map", "Email=email")
    assert code == 2
    assert lines == [
        f'error: {export}:1: external_id: no column of the file maps to it (did you mean --map "Customer ID='
        'external_id"?); the file has: Customer ID, First Name, Last Name, Email, Accepts Email Marketing, '
        "Default Address Company, Default Address Address1, Default Address Address2, Default Address City, "
        "Default Address Province Code, Default Address Country Code, Default Address Zip, Default Address Phone, "
        "Phone, Accepts SMS Marketing, Total Spent, Total Orders, Note, Tax Exempt, Tags"
    ]


def test_a_map_naming_a_column_the_file_lacks_is_one_line_with_a_guess(project: Path) -> None:
    export = shop_file("shopify_customers_export.csv")
    code, lines = run_import(project, "customers", str(export), "--profile", "shopify", "--map", "E-mail Adress=email")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {export}:1: E-mail Adress: --map names a column the file does not have ")
    assert "(did you mean 'Email'?); the file has: Customer ID, First Name" in lines[0]


def test_a_misspelt_mailer_column_is_refused_not_made_an_attribute(project: Path) -> None:
    export = shop_file("shopify_customers_export.csv")
    code, lines = run_import(project, "customers", str(export), "--profile", "shopify", "--map", "Note=frist_name")
    assert (code, len(lines)) == (2, 1)
    assert lines[0].endswith("frist_name: not a column of mailer's customers (did you mean 'first_name'?)")


def test_an_unknown_profile_is_one_line_with_a_suggestion_and_the_headers(project: Path) -> None:
    export = shop_file("shopify_orders_export.csv")
    code, lines = run_import(project, "interactions", str(export), "--profile", "shopfy")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(
        f"error: {export}:1: profile: unknown import profile 'shopfy' (did you mean 'shopify'?); profiles: shopify, "
        "shopify-customers, shopify-orders, woocommerce, woocommerce-customers; the file has: Name, Email, "
    )


def test_a_profile_for_the_other_kind_of_import_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="profile 'shopify-orders' is for interactions"):
        find_profile("customers", "shopify-orders", None, shop_file("shopify_customers_export.csv"))
    with pytest.raises(ImportFailed, match="no woocommerce profile for interactions"):
        find_profile("interactions", "woocommerce", None, shop_file("shopify_orders_export.csv"))


def test_a_profile_in_mailer_toml_wins_over_a_built_in_one_of_that_name(settings: Settings) -> None:
    own = ImportProfile(name="shopify-customers", kind="customers", columns=(("Id", "external_id"),))
    mine = Settings(**{**settings.__dict__, "import_profiles": (own,)})
    assert find_profile("customers", "shopify", mine, shop_file("shopify_customers_export.csv")) is own


def test_the_shopify_exports_give_the_same_store_on_postgresql(engine: Engine, pg_url: str, tmp_path: Path) -> None:
    postgres = store.make_engine(pg_url)
    store.create_schema(postgres)
    try:
        import_shopify(engine)
        import_shopify(postgres)
        optout.unsubscribe_address(postgres, "bruno@example.es", optout.Source.PAGE)
        later = write(tmp_path, "later.csv", ["Customer ID,Email,Accepts Email Marketing",
                                              "7012345678902,bruno@example.es,yes"])
        report = import_customers(postgres, later, layout=profile("customers", "shopify", later))
        assert report.summary().endswith("kept unsubscribed (they unsubscribed through mailer): 1")
        assert snapshot(postgres)[1] == snapshot(engine)[1]
        assert customer(postgres, "7012345678902").unsubscribe_source == "page"
        assert customer(postgres, "7012345678901").customer_since == date(2023, 3, 5)
    finally:
        postgres.dispose()


def test_shop_rows_without_an_address_are_left_out_and_counted_not_bad(engine: Engine, tmp_path: Path) -> None:
    customers = write(tmp_path, "customers_export.csv", [
        "Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Phone",
        "11,Walk,In,,no,+441234567890",
        "12,Kim,Ode,kim@example.com,yes,",
    ])
    report = import_customers(engine, customers, layout=profile("customers", "shopify", customers))
    assert report.summary() == (
        "customers_export.csv: 2 rows, imported 1 new, 0 updated, left out 1 without an email address; "
        "customer_since pending first order: 1"
    )
    orders = write(tmp_path, "orders_export.csv", [
        "Name,Email,Total,Created at,Lineitem name",
        "#1,,9.00,2024-05-01 10:00:00 +0000,Cup",  # a till sale with no customer
        "#1,,,2024-05-01 10:00:00 +0000,Saucer",
        "#2,kim@example.com,4.00,2024-05-02 10:00:00 +0000,Beans",
    ])
    report = import_interactions(engine, orders, layout=profile("interactions", "shopify", orders))
    assert report.summary() == (
        "orders_export.csv: 3 lines, 2 orders, imported 1 new, 0 updated, left out 1 without an email address; "
        "customer_since from first order: 1"
    )


def test_one_column_may_feed_two_of_mailers_when_the_shop_has_no_customer_ids(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", ["E-Mail,Name", "jo@example.de,Jo"])
    maps = [("E-Mail", "email"), ("E-Mail", "external_id"), ("Name", "first_name")]
    import_customers(engine, path, layout=layout_for("customers", path, profile=None, maps=maps, settings=None))
    jo = customer(engine, "jo@example.de")
    assert (jo.email, jo.first_name, jo.attributes) == ("jo@example.de", "Jo", {})


def test_a_dry_run_of_an_orders_export_shows_each_order_as_one_row_read_from_its_lines(project: Path) -> None:
    runner = CliRunner()
    base = ["--config", str(project), "import"]
    runner.invoke(cli, [*base, "customers", str(shop_file("shopify_customers_export.csv")), "--profile", "shopify"])
    orders = str(shop_file("shopify_orders_export.csv"))
    result = runner.invoke(cli, [*base, "interactions", orders, "--profile", "shopify", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[:7] == [
        "mapping:",
        "profile shopify-orders (built-in)",
        "  Name       -> reference",
        "  Email      -> email",
        "  Created at -> occurred_at",
        "  Total      -> amount",
        "  (default)  -> kind = 'order'",
    ]
    assert (
        "  lines 5-7: reference='#1003', email='ann.lee@example.com', occurred_at='2024-01-20T18:45:00-05:00', "
        "amount='120.00', kind='order'"
    ) in out
    assert out[-1] == (
        "shopify_orders_export.csv: 8 lines, 5 orders, would import 5 new, 0 updated; "
        "customer_since from first order: 4"
    )
    with Session(store.make_engine(load_settings(project).store.url)) as session:
        assert session.execute(select(Interaction)).first() is None
