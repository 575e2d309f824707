"""A shop's exports as downloaded, imported with --profile shopify, plan milestones, follow-ups, anniversaries."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner

from mailer.cli import cli

SHOPS = Path(__file__).resolve().parent.parent / "support" / "data" / "shops"


def test_shopify_exports_plan_anniversaries_and_follow_ups_and_the_opted_out_get_nothing(project: Path) -> None:
    runner = CliRunner()

    def mailer(*args: str) -> str:
        result = runner.invoke(cli, ["--config", str(project), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    def plan(start: str, days: int) -> list[tuple[str, str, str, str]]:
        rows = csv.DictReader(io.StringIO(mailer("plan", "--from", start, "--days", str(days), "--format", "csv")))
        return [(r["day"], r["campaign"], r["send"], r["skip"]) for r in rows]

    with project.open("a", encoding="utf-8") as config:
        config.write(
            '\n[[campaign]]\nname = "second-order"\noccasion = "milestone"\nmetric = "order_count"\n'
            'thresholds = [2]\ntemplate = "milestone"\npriority = 30\n'
        )
    mailer("import", "customers", str(SHOPS / "shopify_customers_export.csv"), "--profile", "shopify")
    mailer("import", "interactions", str(SHOPS / "shopify_orders_export.csv"), "--profile", "shopify")

    # Ann's second order (three lines, one order) reaches the milestone; "how did we do?" a week
    # after each order: Ann's is sent, Dev (no marketing) is skipped.
    assert plan("2024-01-20", 10) == [
        ("2024-01-20", "second-order", "1", "0"),
        ("2024-01-27", "how-did-we-do", "1", "0"),
    ]
    assert plan("2024-07-05", 10) == [("2024-07-12", "how-did-we-do", "0", "1")]
    # Anniversaries of the first orders: Chloé's leap-day order is marked on 1 March after a deferral
    # from 28 February, Ann's on 5 March; Bruno and Dev, who did not accept marketing, are skipped.
    year = [(day, campaign, send, skip) for day, campaign, send, skip in plan("2027-01-01", 365) if day != "total"]
    assert [(d, s, k) for d, c, s, k in year if c == "customer-anniversary" and (s, k) != ("0", "0")] == [
        ("2027-03-01", "1", "0"),
        ("2027-03-05", "1", "0"),
        ("2027-06-10", "0", "1"),
        ("2027-07-05", "0", "1"),
    ]


def test_no_anniversary_is_marked_on_the_stand_in_day_of_an_import_until_an_order_gives_the_real_one(
    project: Path, tmp_path: Path
) -> None:
    runner = CliRunner()

    def mailer(*args: str) -> str:
        result = runner.invoke(cli, ["--config", str(project), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    customers = tmp_path / "customers.csv"
    customers.write_text("external_id,email,first_name\nK1,kim@example.com,Kim\n", encoding="utf-8")
    assert "customer_since pending first order: 1" in mailer("import", "customers", str(customers))
    around_a_year_on = date.today() + timedelta(days=363)  # the stand-in day's first anniversary, give or take a day
    assert "customer-anniversary" not in mailer("plan", "--from", around_a_year_on.isoformat(), "--days", "5")
    orders = tmp_path / "orders.csv"
    orders.write_text("external_id,kind,occurred_at,amount,reference\nK1,order,2024-05-06T12:00:00Z,20,O1\n", "utf-8")
    assert "customer_since from first order: 1" in mailer("import", "interactions", str(orders))
    assert "customer-anniversary" in mailer("plan", "--from", "2027-05-06", "--days", "1")
