"""`mailer gifts`, `plan` and `status` for gifts: pools listed, imported, checked, exported, and warned about."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import Engine, delete
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import Settings
from mailer.delivery.transport import MaildirTransport
from mailer.outbox.giftcodes import CodeMaker
from mailer.planning.clock import PassClock
from mailer.service.passes import run_pass
from mailer.store.tables import GiftCode, PassRun
from tests.support.factories import add_customer

DAY = date(2026, 11, 23)


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def empty_pool(engine: Engine) -> None:
    with Session(engine) as session:
        session.execute(delete(GiftCode))
        session.commit()


def codes_file(tmp_path: Path, *codes: str) -> Path:
    path = tmp_path / "pool.csv"
    path.write_text("code,expires\n" + "".join(f"{c},2027-12-31\n" for c in codes), encoding="utf-8")
    return path


def test_gifts_lists_each_pool_and_import_adds_codes_or_nothing(project: Path, engine: Engine, tmp_path: Path) -> None:
    listed = invoke(project, "gifts")
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0].split() == [
        "gift", "kind", "label", "left", "given", "returned", "expired", "void"
    ]
    assert listed.output.splitlines()[2].split()[-5:] == ["60", "0", "0", "0", "0"]  # the sample codes

    added = invoke(project, "gifts", "import", "anniversary-5", str(codes_file(tmp_path, "X-1", "X-2")))
    assert added.exit_code == 0 and "2 codes added" in added.output
    again = invoke(project, "gifts", "import", "anniversary-5", str(codes_file(tmp_path, "X-3", "X-1")))
    assert again.exit_code == 2
    problem = "code: 'X-1' is already in the pool of 'anniversary-5'"
    assert again.output.strip() == f"error: {tmp_path / 'pool.csv'}:3: {problem}"
    as_json = json.loads(invoke(project, "gifts", "list", "--format", "json").output)
    assert as_json == [{"gift": "anniversary-5", "kind": "pool", "label": "a free bag of coffee with your next order",
                        "left": 62, "given": 0, "returned": 0, "expired": 0, "void": 0}]
    unknown = invoke(project, "gifts", "import", "anniversary5", str(codes_file(tmp_path, "X-9")))
    assert unknown.exit_code == 2 and "no gift named 'anniversary5' (did you mean 'anniversary-5'?)" in unknown.output


def test_export_lists_codes_given_with_customer_occasion_and_expiry_and_check_finds_them(
    project: Path, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    empty_pool(engine)
    invoke(project, "gifts", "import", "anniversary-5", str(codes_file(tmp_path, "X-1", "X-2")))
    add_customer(engine, "FIFTH", since=date(2021, 11, 23))
    run_pass(engine, settings, PassClock.on(DAY), MaildirTransport(settings.transport.path),
             campaign_names=["fifth-anniversary"])

    exported = invoke(project, "gifts", "export", "anniversary-5")
    assert exported.exit_code == 0, exported.output
    header, line = exported.output.strip().splitlines()
    assert header == "code,external_id,campaign,occasion_key,occasion_date,given_at,expires,email_status"
    fields = line.split(",")
    assert fields[:5] == ["X-1", "FIFTH", "fifth-anniversary", "anniversary:2026", "2026-11-23"]
    given_on = date.fromisoformat(fields[5][:10])
    assert fields[6:] == [(given_on + timedelta(days=60)).isoformat(), "sent"]  # valid_days from the day it is given
    [record] = json.loads(invoke(project, "gifts", "export", "anniversary-5", "--format", "json").output)
    assert record["code"] == "X-1" and record["external_id"] == "FIFTH"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert json.loads(invoke(project, "gifts", "export", "anniversary-5", "--since", tomorrow,
                             "--format", "json").output) == []

    checked = invoke(project, "gifts", "check", "x-1")
    assert checked.exit_code == 0
    given = "X-1: gift 'anniversary-5', given to customer FIFTH for anniversary:2026 (fifth-anniversary)"
    assert given in checked.output
    spare = invoke(project, "gifts", "check", "X-2")
    assert spare.exit_code == 0 and "X-2: gift 'anniversary-5', available" in spare.output
    nobody = invoke(project, "gifts", "check", "NOPE-1")
    assert nobody.exit_code == 1 and "not a code of any gift" in nobody.output


def test_check_verifies_a_generated_code_offline_and_tells_a_typo_from_a_forgery(project: Path) -> None:
    text = project.read_text(encoding="utf-8").replace(
        'kind = "pool"                          # or "generated"', 'kind = "generated"\nprefix = "THANKS"  #'
    )
    project.write_text(text, encoding="utf-8")
    secret = (project.parent / ".mailer-secret").read_text(encoding="utf-8").strip()
    code = CodeMaker(secret, "THANKS").make(42)
    good = invoke(project, "gifts", "check", code.lower())
    assert good.exit_code == 0, good.output
    assert good.output.splitlines()[0] == (
        f"{code}: genuine 'anniversary-5' code (a free bag of coffee with your next order), made for send-log row 42"
    )
    typo = code[:-1] + ("A" if code[-1] != "A" else "B")
    mistyped = invoke(project, "gifts", "check", typo)
    assert mistyped.exit_code == 1 and "a character is mistyped" in mistyped.output
    forged = CodeMaker("not our secret", "THANKS").make(42)
    assert "not issued by this shop" in invoke(project, "gifts", "check", forged).output


def test_plan_says_what_each_gift_needs_and_status_exits_1_with_the_shortfall(
    project: Path, engine: Engine, settings: Settings
) -> None:
    empty_pool(engine)
    today = datetime.now(UTC).date()
    for n in range(3):  # three 5th anniversaries in the coming days, one code in the pool
        add_customer(engine, f"F{n}", since=(today + timedelta(days=3 + n)).replace(year=today.year - 5),
                     timezone="UTC")
    path = project.parent / "one.csv"
    path.write_text("code\nONLY-1\n", encoding="utf-8")
    assert invoke(project, "gifts", "import", "anniversary-5", str(path)).exit_code == 0
    with Session(engine) as session:  # a pass just ran: nothing else needs a human
        now = datetime.now(UTC)
        session.add(PassRun(kind="pass", started_at=now, finished_at=now, status="done", host="h", pid=1))
        session.commit()

    plan = invoke(project, "plan", "--days", "14", "--campaign", "fifth-anniversary")
    assert plan.exit_code == 0, plan.output
    assert plan.output.splitlines()[-1].startswith(
        "gift 'anniversary-5': 3 needed over the next 14 days, 1 left: runs out on "
    )
    status = invoke(project, "status")
    assert status.exit_code == 1, status.output
    runs_out = (today + timedelta(days=4)).isoformat()
    assert (
        f"  - gift 'anniversary-5': 3 needed over the next 30 days, 1 left: runs out on {runs_out}, 2 short: "
        "see `mailer plan --days 30` and `mailer gifts`, then `mailer gifts import anniversary-5 FILE.csv`"
    ) in status.output.splitlines()

    path.write_text("code\nMORE-1\nMORE-2\n", encoding="utf-8")
    assert invoke(project, "gifts", "import", "anniversary-5", str(path)).exit_code == 0
    healthy = invoke(project, "status")
    assert healthy.exit_code == 0, healthy.output
