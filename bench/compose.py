"""Composer CPU per message, in one process: rendering, inlining and serialising the demo campaigns' messages.

    python -m bench.compose                      # 500 messages, 5 runs per setting, both inliners
    python -m bench.compose --messages 500 --runs 5 --customers 3000

The messages are those the `mailer init` demo campaigns send to a `mailer init`
sample store (``--customers``) on consecutive days from ``--date`` until there
are ``--messages`` of them: every occasion kind, English and German, gifts
and one-click answers, each row with its own id (so its own signed links). Each
is made exactly as a composer process makes it (:func:`mailer.compose.pool.prepare`).

For each inliner and setting (CSS inlined per message, or once per skeleton)
every run starts a fresh renderer (templates compiled before the clock starts,
no skeleton kept) and measures ``time.process_time`` over all the messages;
the table gives the median of the runs and, with skeletons, the share of
messages filled from a cached skeleton. This is a benchmark: no test depends
on its numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlmodel import Session

from mailer import store
from mailer.compose.maker import MessageMaker
from mailer.compose.pool import prepare
from mailer.compose.render import Renderer
from mailer.config import Settings, load_settings
from mailer.contacts import importer
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.planning.policy import Verdict
from mailer.service.passes import unsent_row
from mailer.service.project import fill_sample_pools, init_project
from mailer.store.tables import Customer, SendLog

INLINERS = ("premailer", "css-inline")
DAY = date(2026, 11, 23)


def demo_messages(
    workdir: Path, customers: int, count: int, day: date
) -> tuple[Settings, list[tuple[SendLog, Customer]]]:
    """``count`` rows the demo campaigns would send, with their customers (read once, kept detached)."""
    config = init_project(workdir / "demo", day, customers=customers)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    data = config.parent / "data"
    importer.import_customers(engine, data / "customers.csv")
    importer.import_interactions(engine, data / "interactions.csv")
    fill_sample_pools(engine, settings, data, day, datetime.combine(day, datetime.min.time(), UTC))
    messages: list[tuple[SendLog, Customer]] = []
    with Session(engine, expire_on_commit=False) as session:
        current = day
        while len(messages) < count:
            for item in planning.plan(session, settings, PassClock.on(current), settings.campaigns):
                if item.decision.verdict is not Verdict.SEND or len(messages) >= count:
                    continue
                occasion = item.decision.occasion
                campaign = settings.campaign(occasion.campaign)
                row_id = len(messages) + 1
                gift = None
                if campaign.gift is not None:
                    expires = (occasion.due + timedelta(days=30)).isoformat()
                    gift = {
                        "name": campaign.gift.name,
                        "label": campaign.gift.label,
                        "expires": expires,
                        "code": f"THX-{row_id:05d}-{row_id * 7919 % 100000:05d}",
                    }
                row = unsent_row(settings, occasion, gift, row_id)
                customer = session.get(Customer, occasion.customer_id)
                assert customer is not None
                messages.append((row, customer))
            current += timedelta(days=1)
    engine.dispose()
    return settings, messages


def fresh_maker(settings: Settings, inliner: str, skeletons: bool) -> MessageMaker:
    renderer = Renderer(settings.render.templates, inliner)
    if not skeletons:
        renderer.skeletons = None  # CSS inlined for every message, as before skeletons
    for path in sorted(settings.render.templates.rglob("*")):
        if path.suffix in (".html", ".txt", ".css"):
            renderer.env.get_template(path.relative_to(settings.render.templates).as_posix())
    return MessageMaker(settings, renderer)


def one_run(
    settings: Settings, messages: list[tuple[SendLog, Customer]], inliner: str, skeletons: bool
) -> tuple[float, str]:
    """CPU ms per message over all ``messages``, and how many were filled from a skeleton ("-" without)."""
    maker = fresh_maker(settings, inliner, skeletons)
    started = time.process_time()
    for row, customer in messages:
        prepared = prepare(maker, row, customer)
        assert not prepared.error, prepared.error
    seconds = time.process_time() - started
    cache = getattr(maker.renderer, "skeletons", None)
    if cache is None or not cache.messages:
        return seconds * 1000 / len(messages), "-"
    return seconds * 1000 / len(messages), f"{cache.hits / cache.messages:.1%} ({cache.hits}; {len(cache)} skeletons)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--customers", type=int, default=3000, help="sample customers in the demo store")
    parser.add_argument("--date", type=date.fromisoformat, default=DAY)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        settings, messages = demo_messages(Path(tmp), args.customers, args.messages, args.date)
        plain = Renderer(settings.render.templates, None)
        reader = settings.sender.locale
        templates = {
            (row.template, plain.variant(row.template, customer.locale or reader)) for row, customer in messages
        }
        print(f"{len(messages)} messages, {len(templates)} template/language pairs", file=sys.stderr)
        for inliner in INLINERS:  # warm what is made once per process (premailer's stylesheets, the probe)
            one_run(settings, messages[:20], inliner, True)
        print("| inliner | CSS inlined | CPU ms per message (median) | runs | messages from a skeleton |")
        print("|---|---|---:|---|---:|")
        for inliner in INLINERS:
            for skeletons in (False, True):
                results = [one_run(settings, messages, inliner, skeletons) for _ in range(args.runs)]
                times = [ms for ms, _ in results]
                hit = results[0][1]
                runs = ", ".join(f"{ms:.3f}" for ms in times)
                setting = "once per skeleton" if skeletons else "per message"
                print(f"| {inliner} | {setting} | {statistics.median(times):.3f} | {runs} | {hit} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
