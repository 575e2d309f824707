"""Which process claimed a send-log row, and whether that process is still alive.

Every process that delivers holds a *lease*: a random key, written into
``send_log.claimed_by`` of each row it claims. A row left ``sending`` by a
process that has died was interrupted around its SMTP transaction (perhaps
delivered, perhaps not) and becomes ``unknown``; a row of a living process
must never be touched, however long its transaction takes. So the test is
liveness, not age, and it needs no clock:

PostgreSQL
    the lease is a session-level advisory lock on ``(NAMESPACE, key)`` held
    on a connection of its own for the life of the process. The server drops
    it when that connection ends, which it does when the process exits or is
    killed; "can I take that lock?" is exactly "is its holder gone?".
SQLite
    the lease is an exclusive ``flock`` on a file beside the database
    (``<db>-leases/<key>``). The kernel releases it when the process dies, so
    the same question is asked of the file. SQLite stores are local files, so
    every process sharing one can see the lease files.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import secrets
import threading
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

# The first key of PostgreSQL's two-key advisory lock space ("mlr1"); the day-planning
# and daily-cap locks use the one-bigint space, which does not overlap with it.
NAMESPACE = 0x6D6C7231
_KEY_BITS = 31  # an int4, positive


class Lease:
    """This process's proof of life for one store; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pid = os.getpid()
        self.key = 0
        self._connection: Connection | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._take(None)

    @property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def _take(self, key: int | None) -> None:
        """Hold a lease on ``key`` (or on a fresh random one); retried on the rare collision."""
        for _ in range(100):
            candidate = key if key is not None else secrets.randbits(_KEY_BITS) or 1
            taken = self._take_pg(candidate) if self._postgres else self._take_file(candidate)
            if taken:
                self.key = candidate
                return
        raise RuntimeError(f"could not take a lease on {self.engine.url!r}")  # only if lock probes never end

    def _take_pg(self, key: int) -> bool:
        if self._connection is None:
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return bool(
            self._connection.execute(
                text("SELECT pg_try_advisory_lock(:ns, :key)"), {"ns": NAMESPACE, "key": key}
            ).scalar()
        )

    def _take_file(self, key: int) -> bool:
        folder = lease_folder(self.engine)
        if folder is None:  # an in-memory database lives and dies with this process
            return True
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / str(key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def renew(self) -> None:
        """Make sure the lease is still held (a PostgreSQL restart drops it); take it back if not.

        While it was lost, another process may have turned this process's
        ``sending`` rows into ``unknown``; :func:`mailer.outbox.claims.finish` still
        records their real outcome, because it matches on ``claimed_by``.
        """
        if not self._postgres:
            return
        with self._lock:
            try:
                # A session-level advisory lock lasts as long as its session: a live session holds it.
                assert self._connection is not None
                self._connection.execute(text("SELECT 1"))
                return
            except DBAPIError:
                log.warning("lost the store connection that holds this process's lease; taking it again")
            self._drop_connection()
            self._take(self.key)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):
                self._connection.close()
            self._connection = None

    def release(self) -> None:
        """Give the lease up (at exit); rows still ``sending`` then count as interrupted."""
        with self._lock:
            self._drop_connection()
            if self._fd is not None:
                folder = lease_folder(self.engine)
                if folder is not None:
                    with contextlib.suppress(FileNotFoundError):
                        (folder / str(self.key)).unlink()
                os.close(self._fd)
                self._fd = None


def lease_folder(engine: Engine) -> Path | None:
    """Where a SQLite store's lease files live; None for an in-memory database."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return path.with_name(path.name + "-leases")


def is_dead(engine: Engine, connection: Connection, key: int | None) -> bool:
    """True if no living process holds the lease ``key`` (None: claimed before leases existed)."""
    if key is None:
        return True
    if engine.dialect.name == "postgresql":
        return _pg_is_dead(connection, key)
    return _file_is_dead(engine, key)


def _pg_is_dead(connection: Connection, key: int) -> bool:
    # Probing takes the lock for an instant; xact-scoped, so it cannot outlive the caller's transaction.
    return bool(
        connection.execute(text("SELECT pg_try_advisory_xact_lock(:ns, :key)"), {"ns": NAMESPACE, "key": key}).scalar()
    )


def _file_is_dead(engine: Engine, key: int) -> bool:
    folder = lease_folder(engine)
    if folder is None:
        return True
    path = folder / str(key)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True  # released at a clean exit, or already cleaned up
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead process's file: tidy it up while we hold it
        return True
    finally:
        os.close(fd)


_leases: dict[tuple[int, str], Lease] = {}
_leases_lock = threading.Lock()


def lease_for(engine: Engine) -> Lease:
    """This process's lease on ``engine``'s store, taken on first use and released at exit."""
    url = engine.url.render_as_string(hide_password=False)
    with _leases_lock:
        lease = _leases.get((os.getpid(), url))
        if lease is None:
            lease = Lease(engine)
            _leases[(os.getpid(), url)] = lease
            atexit.register(lease.release)
        return lease
