"""Render messages ahead of sending, on the other cores: a pool of composer processes.

Rendering, inlining CSS and serialising a message costs far more CPU than
sending it over a reused SMTP connection, and the GIL keeps a thread from
doing both at once. So a pass renders *due but not yet claimed* rows in
worker processes while its connections send: a row is still claimed (and
committed as ``sending``) only just before its own SMTP transaction, so
rendering ahead never widens the window a crash can leave ``unknown``.
A rendered message whose row is then taken by another worker is dropped.

The workers get plain values (the row's and the customer's columns), never a
session, and give back the wire bytes with the subject and Message-ID that
the send log records. They are started by a forkserver (the sending process
has threads and open connections, which ``fork`` would copy half-locked), so
a script that calls :func:`mailer.delivery.drain.drain` needs the usual
``if __name__ == "__main__":`` guard of every multiprocessing program.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from mailer.compose.maker import MessageMaker
from mailer.compose.message import HeaderError
from mailer.compose.render import Renderer, RenderError
from mailer.config import Settings
from mailer.outbox.feedback import NOTICE_KIND
from mailer.store.tables import Customer, SendLog, as_loaded


@dataclass(frozen=True)  # no slots: a slotted dataclass pickles field by field, and every one crosses processes
class Prepared:
    """One row's message, ready for the wire, or why it could not be made."""

    row_id: int
    customer_id: int
    to_address: str
    attempts: int  # the row's attempts and first attempt before its claim
    first_attempt_at: datetime | None
    subject: str = ""
    message_id: str = ""
    data: bytes = b""
    error: str = ""  # a render or header error: the row fails with it
    campaign: str = ""  # re-checked before sending: the customer may have left it since
    to_customer: bool = True  # False for staff mail about the customer (an owner's notice): opt-outs do not stop it
    locale: str = ""  # the templates' locale, recorded in the send log
    timezone: str | None = None  # the customer's, as rendered: when a pass for a day counts them emailed


def prepare(maker: MessageMaker, row: SendLog, customer: Customer) -> Prepared:
    """Render and serialise one row's message; never raises for a template's or a header's fault."""
    assert row.id is not None and customer.id is not None
    to_address = maker.recipient(row, customer)
    to_customer = to_address == customer.email and row.occasion_kind != NOTICE_KIND
    where = (row.id, customer.id, to_address, row.attempts, row.first_attempt_at)
    try:
        wire = maker.compose_wire(row, customer)
    except (RenderError, HeaderError) as exc:
        return Prepared(
            *where, error=f"render error: {exc}", campaign=row.campaign, to_customer=to_customer,
            timezone=customer.timezone,
        )
    return Prepared(
        *where, wire.subject, wire.message_id, wire.data, campaign=row.campaign, to_customer=to_customer,
        locale=wire.locale, timezone=customer.timezone,
    )


# The message maker of one worker process (its renderer, templates and secret), made once.
_maker: MessageMaker | None = None


def _start_worker(settings: Settings, sender_pid: int) -> None:
    global _maker
    _maker = MessageMaker(settings, Renderer(settings.render.templates, settings.render.inliner))
    threading.Thread(target=_exit_with, args=(sender_pid,), name="mailer-composer-watch", daemon=True).start()


# How often a worker checks that the sending process still exists.
_WATCH_SECONDS = 0.5


def _exit_with(sender_pid: int) -> None:
    """End this worker once the sending process is gone.

    A sender killed with SIGKILL never shuts its pool down, and a worker
    waiting on the call queue would wait forever (its siblings hold the
    queue's other end): without this, every crash would leave orphans behind.
    """
    while True:
        time.sleep(_WATCH_SECONDS)
        try:
            os.kill(sender_pid, 0)
        except (ProcessLookupError, PermissionError):  # gone (or the pid reused by another user's process)
            os._exit(0)


Columns = dict[str, Any]  # a row's column values, as store.due_rows reads them


def _prepare_in_worker(rows: Sequence[tuple[Columns, Columns]]) -> list[Prepared]:
    assert _maker is not None
    return _prepare_all(_maker, rows)


def _prepare_all(maker: MessageMaker, rows: Sequence[tuple[Columns, Columns]]) -> list[Prepared]:
    return [prepare(maker, as_loaded(SendLog, row), as_loaded(Customer, customer)) for row, customer in rows]


def composer_processes(settings: Settings) -> int:
    """``[render] processes``, or one per core but one; 0 renders in the sending process itself.

    The core left over is the sending process's: its connections, claims and
    commits are what the pass waits for, and a composer that competes with
    it for the CPU slows every SMTP conversation down.
    """
    configured = settings.render.processes
    return configured if configured is not None else max(1, (os.cpu_count() or 1) - 1)


class Composer:
    """Renders rows into :class:`Prepared` messages: inline until :meth:`use_processes`, then in a pool."""

    def __init__(self, settings: Settings, renderer: Renderer) -> None:
        self.settings = settings
        self.maker = MessageMaker(settings, renderer)
        self._pool: Executor | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def use_processes(self) -> None:
        """Render in worker processes from now on (worth it for a large backlog, not for a handful).

        The processes start at once, not with the first rows: a pass that knows it has a backlog
        calls this before it records its plan, and each worker's start (a fresh Python importing
        Jinja, the inliner and the store's models: about a second) runs on another core meanwhile.
        """
        processes = composer_processes(self.settings)
        if self._pool is None and processes > 0:
            # forkserver, not fork: the sending process has threads and open database connections.
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(
                processes, mp_context=context, initializer=_start_worker, initargs=(self.settings, os.getpid())
            )
            for _ in range(processes):
                self._pool.submit(_started)  # each submit starts a worker while none is idle

    def submit(self, rows: Sequence[tuple[Columns, Columns]]) -> Future[list[Prepared]]:
        """Render ``rows`` (send-log row and customer column values; in one worker task, when there are workers)."""
        if self._pool is not None:
            return self._pool.submit(_prepare_in_worker, rows)
        done: Future[list[Prepared]] = Future()
        done.set_result(_prepare_all(self.maker, rows))
        return done


def _started() -> None:
    """A task that only makes the pool start a worker (its initializer does the work)."""
