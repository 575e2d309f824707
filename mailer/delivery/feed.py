"""Due rows rendered ahead of their claim, handed to the sending threads oldest first."""

from __future__ import annotations

import collections
import contextlib
import queue
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from mailer.compose.pool import Composer, Prepared
from mailer.outbox import claims

RENDER_AHEAD = 64  # rows read from the queue at a time, and rendered ahead of their claim


RENDER_CHUNK = 16  # rows rendered by one task of a worker process


POOL_FROM = RENDER_AHEAD  # a backlog this large is rendered in worker processes (a handful is not worth starting them)


class Feed:
    """Due rows, rendered ahead of their claim, handed to the sending threads oldest first.

    :meth:`run` (a thread of its own) reads due ``queued`` rows and their
    customers, renders them (in worker processes once the backlog is large)
    and puts them on a bounded queue, so memory stays flat however long the
    queue in the store is. A row stays ``queued`` until a sending thread
    claims it right before its own SMTP transaction; :meth:`done` tells the
    feed the row has left its hands, so it is not read again.
    """

    def __init__(
        self,
        engine: Engine,
        composer: Composer,
        now: Callable[[], datetime],
        should_stop: Callable[[], bool],
        consumers: int,
    ) -> None:
        self.engine = engine
        self.composer = composer
        self.now = now
        self.should_stop = should_stop
        self.consumers = consumers
        self.ready: queue.Queue[Prepared | None] = queue.Queue(maxsize=RENDER_AHEAD)
        self._lock = threading.Lock()
        self._handled: set[int] = set()
        self._closed = threading.Event()
        self._consumers_left = consumers
        # Several PostgreSQL workers each start at a different row of a queue that fell due at once.
        self._shuffle = secrets.randbelow(2**30) * 2 + 1

    def run(self) -> None:
        try:
            self._feed()
        finally:
            for _ in range(self.consumers):
                self._put(None, force=True)

    def _feed(self) -> None:
        in_flight: set[int] = set()
        # Each row's place in the rendering of its chunk.
        pending: collections.deque[tuple[Future[list[Prepared]], int]] = collections.deque()
        exhausted = False
        with Session(self.engine, expire_on_commit=False) as session:
            while not self.should_stop() and not self._closed.is_set():
                with self._lock:
                    in_flight -= self._handled
                    self._handled.clear()
                if not exhausted and len(pending) < 2 * RENDER_AHEAD:
                    rows = claims.due_rows(session, self.now(), in_flight, RENDER_AHEAD, self._shuffle)
                    session.rollback()  # end the read: SQLite keeps no snapshot open while others write
                    if len(rows) >= POOL_FROM:
                        self.composer.use_processes()
                    for start in range(0, len(rows), RENDER_CHUNK):
                        chunk = rows[start : start + RENDER_CHUNK]
                        rendering = self.composer.submit(chunk)
                        for place, (row, _customer) in enumerate(chunk):
                            in_flight.add(row["id"])
                            pending.append((rendering, place))
                    exhausted = len(rows) < RENDER_AHEAD
                    continue
                if not pending:
                    if not in_flight:
                        return  # nothing due, nothing on its way: the queue is drained
                    self._closed.wait(0.05)  # the last rows are being sent; look again once they are
                    exhausted = False
                    continue
                rendering, place = pending.popleft()
                if not self._put(rendering.result()[place]):
                    return
                exhausted = exhausted and bool(pending)

    def _put(self, item: Prepared | None, force: bool = False) -> bool:
        while True:
            try:
                self.ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._closed.is_set() and not force:
                    return False
                if force:
                    with contextlib.suppress(queue.Empty):
                        self.ready.get_nowait()  # consumers are gone: make room for their stop signal

    def take(self, block: bool) -> Prepared | None:
        """The next rendered row; None when the feed is over. Raises queue.Empty if ``block`` is False."""
        return self.ready.get(block=block)

    def done(self, row_id: int) -> None:
        with self._lock:
            self._handled.add(row_id)

    def consumer_done(self) -> None:
        """A sending thread has stopped taking rows; once all have, the feed stops too."""
        with self._lock:
            self._consumers_left -= 1
            if self._consumers_left == 0:
                self._closed.set()

    def close(self) -> None:
        self._closed.set()
