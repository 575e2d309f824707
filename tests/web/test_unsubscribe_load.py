"""Load check: 2,000 one-click POSTs from a second process to the real `mailer serve`: none lost, none failed.

Latency is printed (run with -s to see it), never asserted: timing does not decide a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, col

from mailer import store
from mailer.config import load_settings
from mailer.contacts import importer
from mailer.service.project import init_project
from mailer.store.tables import Customer
from tests.support.served import Served

pytestmark = pytest.mark.slow

REQUESTS = 2000
ROOT = Path(__file__).resolve().parents[2]


def test_two_thousand_one_click_posts_from_another_process_all_land(tmp_path: Path) -> None:
    config = init_project(tmp_path / "proj", date(2026, 11, 23), customers=REQUESTS)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    importer.import_customers(engine, config.parent / "data" / "customers.csv")
    with Session(engine) as session:
        ids = sorted(session.execute(select(col(Customer.id))).scalars())
    assert len(ids) == REQUESTS and ids == list(range(ids[0], ids[0] + REQUESTS))

    served = Served(config)
    try:
        client = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "unsubscribe_load.py"),
                "--base",
                served.base,
                "--secret-file",
                str(settings.sender.secret.file),
                "--first",
                str(ids[0]),
                "--count",
                str(REQUESTS),
                "--concurrency",
                "16",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
    finally:
        assert served.stop() == 0
    report = json.loads(client.stdout)
    print(f"\nunsubscribe load: {report}")
    assert report["statuses"] == {"200": REQUESTS}, report
    with Session(engine) as session:
        landed = session.execute(
            select(Customer.unsubscribe_source, func.count()).group_by(Customer.unsubscribe_source)
        ).all()
    engine.dispose()
    assert dict(landed) == {"one-click": REQUESTS}
