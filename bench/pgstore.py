"""Copy a generated SQLite store into a PostgreSQL database, kept between runs (``bench.plan --postgres``).

    python -m bench.pgstore bench/data/store-1000000.db [--reload]

The database is named after the store (``store-1000000.db`` → ``mailer_bench_plan_1000000``) and
created under the admin URL ``MAILER_TEST_PG`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``: that database itself is only used to create
and drop others). The schema comes from the real migrations (``store.create_schema``); every
table's rows are streamed from the SQLite file with psycopg's ``COPY ... FROM STDIN``, not ORM
inserts (1M customers and 5M interactions: about two minutes). While it copies, foreign-key
triggers are off (``session_replication_role = replica``: the rows come from a store that
enforced them) and the secondary indexes of a table are dropped and built again afterwards,
which is several times faster than keeping them up to date row by row. Then the id sequences
are moved past the copied ids and ``VACUUM (ANALYZE)`` gives the planner its statistics and
the visibility map that index-only scans need, as autovacuum would have on a store in use.

A comment on the database records which file it holds (name, size, modification time) at which
schema revision: a later run with the same file and mailer uses it as it is; a regenerated file,
a new migration, or ``--reload``, loads it again. Types: SQLite keeps instants as naive UTC text
(the copy runs with ``TimeZone = UTC``, so ``timestamptz`` reads them as UTC), booleans as 0/1
(PostgreSQL's boolean input takes both), decimals as REAL or INTEGER (numeric(14, 2) parses and
rounds them) and JSON as text.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

from mailer import store
from mailer.store import migrate, tables  # noqa: F401  # tables: their metadata

PG_ADMIN = os.environ.get("MAILER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ROWS_PER_FETCH = 20_000


def database_name(sqlite_store: Path) -> str:
    """``store-1000000-steady.db`` → ``mailer_bench_plan_1000000_steady``."""
    return "mailer_bench_plan_" + sqlite_store.stem.removeprefix("store-").replace("-", "_")


def database_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _signature(sqlite_store: Path) -> str:
    """What the database holds: the file (name, size, modification time) at this schema revision."""
    stat = sqlite_store.stat()
    return (f"bench.pgstore: {sqlite_store.name} {stat.st_size} bytes, modified {stat.st_mtime_ns},"
            f" schema {migrate.head()}")


def loaded(sqlite_store: Path, reload: bool = False) -> str:
    """The URL of a PostgreSQL database holding ``sqlite_store``'s rows: loaded unless already there."""
    name = database_name(sqlite_store)
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            comment = connection.execute(
                text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :name"),
                {"name": name},
            ).scalar()
            if comment == _signature(sqlite_store) and not reload:
                return database_url(name)
            # Missing, half loaded (no comment yet), from an older file, or asked for: load it afresh.
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = database_url(name)
        load(sqlite_store, url)
        with admin.connect() as connection:
            connection.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{_signature(sqlite_store)}'"))
    finally:
        admin.dispose()
    return url


def load(sqlite_store: Path, url: str) -> None:
    """Create the schema in the (empty) database at ``url`` and copy every table's rows into it."""
    engine = store.make_engine(url)
    store.create_schema(engine)
    engine.dispose()
    source = sqlite3.connect(f"file:{sqlite_store}?mode=ro", uri=True)
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as target:
        target.execute("SET session_replication_role = replica")  # no FK triggers: the source enforced them
        target.execute("SET TimeZone = 'UTC'")  # SQLite's instants are naive UTC text
        target.execute("SET maintenance_work_mem = '256MB'")  # index builds, this session only
        for table in SQLModel.metadata.sorted_tables:
            _copy_table(source, target, table.name)
        target.commit()
    source.close()
    with psycopg.connect(conninfo, autocommit=True) as target:
        start = time.perf_counter()
        target.execute("VACUUM (ANALYZE)")
        print(f"  VACUUM (ANALYZE) in {time.perf_counter() - start:.0f} s", flush=True)


def _copy_table(source: sqlite3.Connection, target: psycopg.Connection[Any], name: str) -> None:
    present = source.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    if not present or not source.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")').fetchone()[0]:
        return
    start = time.perf_counter()
    wanted = {c.name for c in SQLModel.metadata.tables[name].columns}
    columns = [row[1] for row in source.execute(f'PRAGMA table_info("{name}")') if row[1] in wanted]
    quoted = ", ".join(f'"{c}"' for c in columns)
    # Secondary indexes (not those behind a primary key or a UNIQUE constraint) are built after the copy.
    indexes = target.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
        (name, name),
    ).fetchall()
    for index, _definition in indexes:
        target.execute(f'DROP INDEX "{index}"')
    rows = source.execute(f'SELECT {quoted} FROM "{name}"')
    copied = 0
    with target.cursor().copy(f'COPY "{name}" ({quoted}) FROM STDIN') as copy:
        while batch := rows.fetchmany(ROWS_PER_FETCH):
            for row in batch:
                copy.write_row(row)
            copied += len(batch)
    for _index, definition in indexes:
        target.execute(definition)
    if "id" in columns:  # the next id a pass inserts comes after the copied ones
        target.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), max(id)) FROM \"{name}\""
            " HAVING max(id) IS NOT NULL"
        )
    print(f"  {name}: {copied:,} rows in {time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="a generated SQLite store (bench/data/store-N.db)")
    parser.add_argument("--reload", action="store_true", help="drop the database and load it again")
    args = parser.parse_args()
    start = time.perf_counter()
    url = loaded(args.store, args.reload)
    print(f"{args.store.name} → {url.rsplit('/', 1)[1]} ready in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
