"""A real SMTP server on loopback for tests and benchmarks, built on aiosmtpd.

Nothing here patches :mod:`smtplib`: clients talk SMTP over a real socket to an
aiosmtpd server running on its own event loop in a background thread.  The
module has no pytest dependency so that benchmarks and the ``__main__`` entry
point can use it.

In-process use::

    with SmtpServer(tls="starttls", auth=("user", "pw"),
                    script={"a@x.test": ["rcpt:451 4.3.0 busy", "ok"]}) as server:
        ...  # point the client at server.host / server.port, trust server.ca_path
        server.wait_for(1)
        [msg] = server.messages

Separate process (the server must outlive a SIGKILLed client)::

    python -m tests.support.smtpserver --port 0 --sink --log-file F --ready-file R

The ready file receives the chosen port once the server accepts connections;
the log file receives one JSON line per accepted message (see
:func:`read_delivery_log`); SIGTERM or SIGINT stops the server cleanly.

Like Postfix, the server offers PIPELINING (RFC 2920) in its EHLO reply unless
told not to (``pipelining=False``, ``--no-pipelining``): aiosmtpd reads the
commands a client sent in one write one after the other and answers each in turn.

Fault script
------------
``script`` maps a recipient address (matched case-insensitively) to a sequence
of actions, or is a callable ``recipient -> sequence | None`` asked once per
recipient, the first time that recipient is seen.  Each ``RCPT TO`` for a
recipient is one delivery attempt and consumes exactly one action; once the
sequence is exhausted every further attempt succeeds.  An action is
``[PHASE:]BODY`` where PHASE is ``rcpt`` or ``data`` (default ``data``), or
``mail`` for an address used as the *sender*: each ``MAIL FROM`` with it
consumes the ``mail:`` action at the head of its sequence, if there is one
(in a mapping or queued with ``enqueue``; the callable is only asked about
recipients).

``ok`` / ``250`` / any ``2xx ...`` reply
    success (a literal 2xx text is sent as the reply).
``4xx ...`` / ``5xx ...``
    that reply, e.g. ``"451 4.3.0 try later"`` or ``"rcpt:550 5.1.1 no such user"``;
    a bare code gets a generic text.  After a ``421`` the server closes the
    connection, as RFC 5321 requires.  Nothing is recorded.
``drop``
    close the connection instead of replying (at DATA: after the whole message
    has been received).  Nothing is recorded; the client sees a disconnect.
``hangup`` (DATA only)
    close the connection on the DATA command, before the 354: the message was
    never sent, so the client knows nothing can have been delivered.
``lost-reply`` (DATA only)
    record the message as delivered, then drop the connection before the 250:
    the classic "did it go or not?" case behind duplicate deliveries.
``stall:SECONDS``
    sleep (asyncio, so other connections are still served) before replying;
    if the client is still connected afterwards the attempt succeeds.  A client
    that gives up and disconnects cancels the stall, and nothing is recorded.

At DATA, the actions of all recipients of the transaction apply in RCPT
order: stalls accumulate and the first non-success action decides the reply.
A DATA with no recipient accepted gets aiosmtpd's ``503``, or the reply given
as ``data_without_recipients`` (e.g. Postfix's ``554 5.5.1``, or a ``354`` from
a lax server: then what the client sends up to the dot is kept in
``orphan_data`` and answered ``250``, and no message is recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import email.parser
import email.policy
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "Action",
    "DeliveryRecord",
    "ReceivedMessage",
    "Script",
    "SmtpServer",
    "TlsMode",
    "main",
    "parse_action",
    "read_delivery_log",
]

TlsMode = Literal["none", "starttls", "implicit"]
Script = Mapping[str, Sequence[str]] | Callable[[str], Sequence[str] | None]

#: Sent in EHLO/banner.  Passing it explicitly also matters for speed: without
#: a hostname aiosmtpd calls socket.getfqdn() for *every* connection.
SERVER_HOSTNAME = "smtp.mailer.test"

#: How long a dropped connection's handler waits to be cancelled by
#: connection_lost().  Only a guard: cancellation normally comes at once.
_DROP_GUARD_SECONDS = 60.0

_REPLY_RE = re.compile(r"(?P<code>[245]\d\d)(?: (?P<text>.*))?\Z")
_DEFAULT_REPLY_TEXT = {
    "2": "2.0.0 OK",
    "4": "4.0.0 scripted temporary failure",
    "5": "5.0.0 scripted permanent failure",
}


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    """One parsed script action; build it with :func:`parse_action`."""

    phase: Literal["mail", "rcpt", "data"]
    kind: Literal["reply", "drop", "hangup", "lost-reply", "stall"]
    reply: str = "250 OK"  # the full SMTP reply line, for kind == "reply"
    seconds: float = 0.0  # for kind == "stall"

    @property
    def succeeds(self) -> bool:
        """True for actions after which the attempt is accepted (2xx, stall)."""
        return self.kind == "stall" or (self.kind == "reply" and self.reply.startswith("2"))


OK = Action(phase="data", kind="reply")


def parse_action(text: str) -> Action:
    """Parse ``[mail:|rcpt:|data:]BODY`` (see the module docstring).

    Raises ``ValueError`` for anything else, so a typo in a script fails when
    the server is built rather than silently turning into a success.
    """
    phase: Literal["mail", "rcpt", "data"] = "data"
    body = text.strip()
    head, sep, rest = body.partition(":")
    if sep and head.lower() in ("mail", "rcpt", "data"):
        phase = "mail" if head.lower() == "mail" else "rcpt" if head.lower() == "rcpt" else "data"
        body = rest.strip()
    low = body.lower()
    if low == "ok":
        return Action(phase=phase, kind="reply")
    if low == "drop":
        return Action(phase=phase, kind="drop")
    if low == "hangup":
        if phase != "data":
            raise ValueError(f"{text!r}: hangup only makes sense at DATA")
        return Action(phase=phase, kind="hangup")
    if low == "lost-reply":
        if phase != "data":
            raise ValueError(f"{text!r}: lost-reply only makes sense at DATA")
        return Action(phase=phase, kind="lost-reply")
    if low.startswith("stall:"):
        try:
            seconds = float(body[len("stall:") :])
        except ValueError:
            raise ValueError(f"{text!r}: stall needs seconds, e.g. 'stall:5'") from None
        if not seconds >= 0:  # also rejects NaN
            raise ValueError(f"{text!r}: stall seconds must be >= 0")
        return Action(phase=phase, kind="stall", seconds=seconds)
    match = _REPLY_RE.match(body)
    if match is None:
        raise ValueError(
            f"{text!r}: expected ok, drop, hangup, lost-reply, stall:SECONDS or an SMTP reply "
            "'2xx/4xx/5xx [text]', optionally prefixed with 'mail:', 'rcpt:' or 'data:'"
        )
    code, reply_text = match["code"], match["text"]
    reply = f"{code} {reply_text or _DEFAULT_REPLY_TEXT[code[0]]}"
    return Action(phase=phase, kind="reply", reply=reply)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted (answered 250 to, or ``lost-reply``)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly the bytes after DATA, dot-unstuffed, CRLF line ends
    tls: bool  # the message travelled over TLS (STARTTLS or implicit)
    login: str | None  # the AUTH user, if the session authenticated
    mail_options: tuple[str, ...] = ()  # the MAIL FROM parameters (SMTPUTF8, BODY=8BITMIME)
    helo: str | None = None  # the name the client greeted with (EHLO/HELO)

    def parsed(self) -> EmailMessage:
        """The message parsed with the modern ``email.policy.default``."""
        parser = email.parser.BytesParser(policy=email.policy.default)
        return parser.parsebytes(self.data)


@dataclass(frozen=True)
class DeliveryRecord:
    """One line of the delivery log (see :func:`read_delivery_log`)."""

    seq: int  # 1-based order of acceptance at the server (restarts after reset())
    message_id: str | None
    occasion: str | None  # the X-Mailer-Occasion header, if present
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str | None
    at: float = 0.0  # when the server accepted it (time.time(), before its 250): for benchmarks' rates


def read_delivery_log(path: str | os.PathLike[str]) -> list[DeliveryRecord]:
    """Read the JSON-lines delivery log written by a server with ``log_file``.

    A missing file reads as no deliveries.  A final line without its newline
    (the writer died mid-line) is ignored: the server writes and flushes each
    record before replying 250, so such a message was never acknowledged.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.split("\n")[:-1]:  # the last piece is "" or an incomplete line
        raw = json.loads(line)
        records.append(
            DeliveryRecord(
                seq=raw["seq"],
                message_id=raw["message_id"],
                occasion=raw["occasion"],
                mail_from=raw["mail_from"],
                rcpt_tos=tuple(raw["rcpt_tos"]),
                subject=raw["subject"],
                at=raw.get("at", 0.0),
            )
        )
    return records


# --------------------------------------------------------------------------- aiosmtpd glue


class _Envelope(Envelope):
    """An envelope that also carries the DATA-phase actions of its recipients."""

    def __init__(self) -> None:
        super().__init__()
        self.data_actions: list[Action] = []


class _SMTP(SMTP):
    """aiosmtpd's SMTP protocol with two adjustments (see ``__init__``)."""

    def __init__(
        self,
        handler: _Handler,
        *,
        auth_without_starttls: bool,
        **kwargs: Any,
    ) -> None:
        # aiosmtpd only counts STARTTLS as "TLS": over implicit TLS it refuses
        # AUTH with 538 unless auth_require_tls=False (aiosmtpd issues #274,
        # #281).  But SMTP(auth_required=True, auth_require_tls=False) emits a
        # UserWarning, which pytest's filterwarnings=error turns into an
        # exception in the server thread.  So construct with the default and
        # relax the (private, 1.4.x) flag afterwards.
        super().__init__(handler, **kwargs)
        if auth_without_starttls:
            self._auth_require_tls = False
        self._handler = handler

    def _create_envelope(self) -> _Envelope:  # documented subclass hook
        return _Envelope()

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope
        if isinstance(envelope, _Envelope) and any(a.kind == "hangup" for a in envelope.data_actions):
            assert self.transport is not None
            self.transport.close()  # before the 354: the client never sends the message
            return
        reply = self._handler.data_without_recipients
        if reply is not None and envelope is not None and not envelope.rcpt_tos:
            await self._data_without_recipients(reply)
            return
        await super().smtp_DATA(arg)

    async def _data_without_recipients(self, reply: str) -> None:
        """DATA although no recipient was accepted, answered ``reply``; after a 354, whatever comes is kept aside."""
        await self.push(reply)
        if not reply.startswith("354"):
            return
        lines = []
        while (line := await self._reader.readuntil(b"\r\n")) != b".\r\n":
            lines.append(line)
        with self._handler.cond:
            self._handler.orphan_data.append(b"".join(lines))
            self._handler.cond.notify_all()
        self._set_post_data_state()
        await self.push("250 2.0.0 OK: no recipients")  # what a lax server says; a message for no one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # called again after STARTTLS; set.add is idempotent
        self._handler.connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._handler.connections.discard(self)
        super().connection_lost(error)


class _Controller(Controller):
    """A Controller that serves on a socket we bound ourselves.

    aiosmtpd's Controller needs a concrete port: with ``port=0`` it binds an
    ephemeral port but then probes port 0 to finish starting.  Binding first
    gives a race-free ephemeral port that is known before ``start()``.
    """

    def __init__(self, handler: _Handler, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock
        self._smtp_handler = handler

    def factory(self) -> _SMTP:
        return _SMTP(self._smtp_handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:  # documented override point
        return self.loop.create_server(
            self._factory_invoker, sock=self._sock, ssl=self.ssl_context, backlog=256
        )


class _Handler:
    """aiosmtpd handler: applies the fault script and records deliveries.

    Hooks run on the server's event-loop thread; all state shared with the
    caller's thread is guarded by ``cond`` (a Condition over an RLock).
    """

    def __init__(
        self,
        script: Script | None,
        sink: bool,
        log: IO[str] | None,
        delay: float = 0.0,
        pipelining: bool = True,
        data_without_recipients: str | None = None,
    ) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.sink = sink
        self.delay = delay
        self.log = log
        self.pipelining = pipelining
        self.data_without_recipients = data_without_recipients
        self.orphan_data: list[bytes] = []  # what came after a 354 to a DATA without recipients
        self.messages: list[ReceivedMessage] = []
        self.count = 0
        self.attempts: collections.Counter[str] = collections.Counter()
        self.stalling = 0
        self.connections: set[_SMTP] = set()  # only touched on the loop thread
        self.script_fn: Callable[[str], Sequence[str] | None] | None = None
        self.queues: dict[str, collections.deque[Action]] = {}
        self.reset(script)

    def reset(self, script: Script | None) -> None:
        with self.cond:
            self.messages.clear()
            self.orphan_data.clear()
            self.count = 0
            self.attempts.clear()
            self.queues.clear()
            self.script_fn = None
            if callable(script):
                self.script_fn = script
            elif script is not None:
                for rcpt, actions in script.items():
                    self.enqueue(rcpt, actions)
            self.cond.notify_all()

    def enqueue(self, rcpt: str, actions: Sequence[str]) -> None:
        if isinstance(actions, str):  # a lone string is a classic slip for [string]
            raise TypeError(f"script for {rcpt!r} must be a sequence of actions, not a str")
        parsed = [parse_action(a) for a in actions]
        with self.cond:
            self.queues.setdefault(rcpt.casefold(), collections.deque()).extend(parsed)

    def _next_action(self, rcpt: str) -> Action:
        key = rcpt.casefold()
        with self.cond:
            self.attempts[key] += 1
            if key not in self.queues and self.script_fn is not None:
                self.enqueue(rcpt, self.script_fn(rcpt) or ())
            queue = self.queues.get(key)
            action = queue.popleft() if queue else OK
            self.cond.notify_all()
            return action

    def _sender_action(self, sender: str) -> Action | None:
        """The ``mail:`` action at the head of ``sender``'s script, consumed; None when there is none."""
        with self.cond:
            queue = self.queues.get(sender.casefold())
            if queue and queue[0].phase == "mail":
                return queue.popleft()
            return None

    # -- hooks (signatures fixed by aiosmtpd) --------------------------------------

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: _Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to the hook once there is one
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the last line, "250 HELP"
        return responses

    async def _act(self, server: SMTP, action: Action) -> tuple[bool, str]:
        """Carry out a scripted action at MAIL or RCPT: whether it refuses the command, and the reply."""
        if action.kind == "stall":
            await self._stall(action.seconds)
        elif action.kind == "drop":
            await _drop(server)
        elif not action.succeeds:
            if action.reply.startswith("421"):
                await _reply_then_close(server, action.reply)
            return True, action.reply
        else:
            return False, action.reply
        return False, "250 OK"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: _Envelope, address: str, mail_options: list[str]
    ) -> str:
        action = self._sender_action(address)
        reply = "250 OK"
        if action is not None:
            refused, reply = await self._act(server, action)
            if refused:
                return reply
        # Providing handle_MAIL means we must do aiosmtpd's default work ourselves.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: _Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        action = self._next_action(address)
        reply = "250 OK"
        if action.phase == "data":
            envelope.data_actions.append(action)
        else:
            refused, reply = await self._act(server, action)
            if refused:
                return reply
        # Providing handle_RCPT means we must do aiosmtpd's default work ourselves.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: _Envelope) -> str:
        reply = "250 OK"
        if self.delay:
            # A real relay spends tens of milliseconds on a message (queue file, fsync, filters) before
            # its reply to the final dot; the stall (asyncio) keeps every other connection served meanwhile.
            await self._stall(self.delay)
        for action in envelope.data_actions:
            if action.kind == "stall":
                await self._stall(action.seconds)
            elif action.kind == "drop":
                await _drop(server)
            elif action.kind == "lost-reply":
                self._record(server, session, envelope)
                await _drop(server)
            elif not action.succeeds:
                if action.reply.startswith("421"):
                    await _reply_then_close(server, action.reply)
                return action.reply
            elif action.reply != OK.reply:
                reply = action.reply
        self._record(server, session, envelope)
        return reply

    # -- helpers --------------------------------------------------------------------

    async def _stall(self, seconds: float) -> None:
        with self.cond:
            self.stalling += 1
            self.cond.notify_all()
        try:
            # asyncio.sleep, not time.sleep: the loop keeps serving other
            # connections, and a client disconnect cancels us right here.
            await asyncio.sleep(seconds)
        finally:
            with self.cond:
                self.stalling -= 1
                self.cond.notify_all()

    def _record(self, server: SMTP, session: Session, envelope: _Envelope) -> None:
        data: bytes = envelope.original_content or b""
        rcpt_tos = tuple(envelope.rcpt_tos)
        mail_from = envelope.mail_from or ""
        with self.cond:
            self.count += 1
            if not self.sink:
                transport = server.transport
                auth_data = session.auth_data  # a LoginPassword for PLAIN and LOGIN
                login = auth_data.login if isinstance(auth_data, LoginPassword) else None
                self.messages.append(
                    ReceivedMessage(
                        mail_from=mail_from,
                        rcpt_tos=rcpt_tos,
                        data=data,
                        tls=transport is not None
                        and transport.get_extra_info("ssl_object") is not None,
                        login=login.decode("utf-8", "replace") if login is not None else None,
                        mail_options=tuple(envelope.mail_options),
                        helo=session.host_name,
                    )
                )
            if self.log is not None:
                self._write_log(self.count, mail_from, rcpt_tos, data)
            self.cond.notify_all()

    def _write_log(self, seq: int, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes) -> None:
        assert self.log is not None
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(data)

        def header(name: str) -> str | None:
            value = headers.get(name)
            return None if value is None else str(value).strip()

        line = json.dumps(
            {
                "seq": seq,
                "message_id": header("Message-ID"),
                "occasion": header("X-Mailer-Occasion"),
                "mail_from": mail_from,
                "rcpt_tos": list(rcpt_tos),
                "subject": header("Subject"),
                "at": time.time(),
            },
            ensure_ascii=False,
        )
        # One write + flush per record, before the 250 goes out: once the
        # client has its 250 the record is in the OS, whatever happens to the
        # client process afterwards.
        self.log.write(line + "\n")
        self.log.flush()


async def _drop(server: SMTP) -> None:
    """Close the connection without replying; never returns normally.

    Closing the transport makes aiosmtpd's connection_lost() cancel the session
    task, which is awaiting us; the exception only exists for the case that the
    cancellation never comes (aiosmtpd would then answer "500 Error: ...").
    """
    if server.transport is not None:
        server.transport.close()
    await asyncio.sleep(_DROP_GUARD_SECONDS)
    raise ConnectionAbortedError("scripted drop: connection was not torn down")


async def _reply_then_close(server: SMTP, reply: str) -> None:
    """Send ``reply`` (a 421) and close the connection, as RFC 5321 §3.8 requires."""
    await server.push(reply)
    await _drop(server)


def _make_authenticator(user: str, password: str) -> Callable[..., AuthResult]:
    expected = LoginPassword(user.encode("utf-8"), password.encode("utf-8"))

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == expected
        # handled=False makes aiosmtpd send its standard "535 5.7.8" on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


# --------------------------------------------------------------------------- the server


class SmtpServer:
    """An aiosmtpd server on a background thread; use as a context manager.

    Arguments (all keyword-only):

    ``host``/``port``
        Where to listen; ``port=0`` (default) picks a free ephemeral port.
        After ``start()`` the real values are ``.host`` and ``.port``.
    ``tls``
        ``"none"``, ``"starttls"`` (offered; with ``require_starttls`` nothing
        but EHLO/NOOP/QUIT is allowed before it) or ``"implicit"`` (TLS from the
        first byte, for ``smtplib.SMTP_SSL``).  The certificate comes from a
        fresh trustme CA, valid for ``cert_hostnames``; ``.ca_path`` is a PEM
        file of the CA a client should trust.
    ``untrusted``
        Serve a certificate from a *different* CA than the one in ``.ca_path``,
        so even a client that trusts ``.ca_path`` must refuse it.
    ``auth``
        ``(user, password)``: AUTH PLAIN/LOGIN is required before MAIL; wrong
        credentials get 535.  With STARTTLS, AUTH is only offered after
        STARTTLS; with implicit TLS and with ``tls="none"`` it is offered at
        once (the latter so tests can check a client refuses to send a
        password in clear text).
    ``script``
        Per-recipient fault injection, see the module docstring.
    ``sink``
        Count deliveries but keep no messages (``.messages`` then raises).
    ``log_file``
        Append one JSON line per accepted message (see
        :func:`read_delivery_log`), flushed before the 250 reply.
    ``delay``
        Seconds to wait after the final dot before replying (every message), like a real
        relay's queueing; other connections are served meanwhile. For latency benchmarks.
    ``smtputf8``
        Offer SMTPUTF8 (RFC 6531) in EHLO (aiosmtpd's Controller does by default);
        ``False`` for a relay that cannot carry a non-ASCII address.
    ``pipelining``
        Offer PIPELINING (RFC 2920) in EHLO, as Postfix does by default; ``False``
        for a relay that wants each command answered before the next is sent.
    ``data_without_recipients``
        The reply to a DATA when no recipient was accepted, instead of aiosmtpd's
        ``503`` (see the module docstring).

    Thread safety: all accessors may be called from any thread while the
    server runs; they return snapshots.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsMode = "none",
        require_starttls: bool = True,
        untrusted: bool = False,
        cert_hostnames: Sequence[str] = ("127.0.0.1", "localhost"),
        auth: tuple[str, str] | None = None,
        script: Script | None = None,
        sink: bool = False,
        log_file: str | os.PathLike[str] | None = None,
        smtputf8: bool = True,
        delay: float = 0.0,
        pipelining: bool = True,
        data_without_recipients: str | None = None,
    ) -> None:
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"tls must be 'none', 'starttls' or 'implicit', not {tls!r}")
        self.host = host
        self.port = port
        self.tls: TlsMode = tls
        self.ca_path: Path | None = None
        self.log_file = Path(log_file) if log_file is not None else None
        self._require_starttls = require_starttls
        self._untrusted = untrusted
        self._cert_hostnames = tuple(cert_hostnames)
        self._auth = auth
        self._smtputf8 = smtputf8
        self._log: IO[str] | None = None
        self._tmpdir: str | None = None
        self._controller: _Controller | None = None
        # Built (and the script validated) now, so a bad script fails at construction.
        if data_without_recipients is not None and not re.fullmatch(r"[2-5]\d\d(?: .*)?", data_without_recipients):
            raise ValueError(f"data_without_recipients: {data_without_recipients!r} is not an SMTP reply")
        self._handler = _Handler(script, sink, None, delay, pipelining, data_without_recipients)

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind, start serving, and return once the server accepts connections."""
        if self._controller is not None:
            raise RuntimeError("server already started")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        smtp_kwargs: dict[str, Any] = {"server_hostname": SERVER_HOSTNAME, "enable_SMTPUTF8": self._smtputf8}
        if self.tls != "none":
            server_ctx = self._make_tls_context()
            if self.tls == "starttls":
                smtp_kwargs["tls_context"] = server_ctx
                smtp_kwargs["require_starttls"] = self._require_starttls
            else:
                smtp_kwargs["ssl_context"] = server_ctx  # Controller wraps the listener
        if self._auth is not None:
            smtp_kwargs["authenticator"] = _make_authenticator(*self._auth)
            smtp_kwargs["auth_required"] = True
        # auth_require_tls stays at aiosmtpd's default (True) for STARTTLS;
        # see _SMTP.__init__ for why it is relaxed the roundabout way otherwise.
        smtp_kwargs["auth_without_starttls"] = self.tls != "starttls"

        if self.log_file is not None:
            self._log = self.log_file.open("a", encoding="utf-8")
            self._handler.log = self._log

        # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets that say they are TCP, and
        # with it on, the second of several replies to pipelined commands waits ~40 ms for the client's ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            # SO_REUSEADDR lets a restarted server take a fixed port straight back.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        controller = _Controller(self._handler, sock, **smtp_kwargs)
        self._controller = controller
        try:
            controller.start()
        except BaseException:
            sock.close()  # Controller only owns it once the loop server exists
            raise

    def _make_tls_context(self) -> ssl.SSLContext:
        import trustme  # imported lazily: it pulls in cryptography, slow for plain runs

        ca = trustme.CA()
        cert = ca.issue_cert(*self._cert_hostnames)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        trusted = trustme.CA() if self._untrusted else ca
        self._tmpdir = tempfile.mkdtemp(prefix="smtpserver-")
        self.ca_path = Path(self._tmpdir) / "ca.pem"
        trusted.cert_pem.write_to_path(str(self.ca_path))
        return ctx

    def stop(self) -> None:
        """Disconnect all clients, stop serving and release files.  Idempotent."""
        controller, self._controller = self._controller, None
        if controller is not None:
            if controller.loop.is_running():
                # Abort live connections (e.g. stalled ones) and let their tasks
                # finish on the loop first; aiosmtpd's stop() would otherwise leave
                # transports open, which surface later as ResourceWarnings.
                future = asyncio.run_coroutine_threadsafe(
                    _abort_connections(self._handler), controller.loop
                )
                with contextlib.suppress(Exception):
                    future.result(timeout=10)
            controller.stop(no_assert=True)
            if not controller.loop.is_closed():  # start() failed before the loop ran
                controller.loop.close()
        if self._log is not None:
            self._log.close()
            self._log = None
            self._handler.log = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            self.ca_path = None

    close = stop

    # -- observations --------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of messages accepted so far (also in sink mode)."""
        with self._handler.cond:
            return self._handler.count

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Snapshot of the accepted messages, in order of acceptance."""
        with self._handler.cond:
            if self._handler.sink:
                raise RuntimeError("a sink server keeps no messages; use .count or log_file")
            return list(self._handler.messages)

    @property
    def orphan_data(self) -> list[bytes]:
        """What clients sent after a 354 to a DATA with no recipient (``data_without_recipients``)."""
        with self._handler.cond:
            return list(self._handler.orphan_data)

    def by_recipient(self) -> dict[str, list[ReceivedMessage]]:
        """Accepted messages per envelope recipient (as the client spelt it)."""
        grouped: dict[str, list[ReceivedMessage]] = {}
        for message in self.messages:
            for rcpt in message.rcpt_tos:
                grouped.setdefault(rcpt, []).append(message)
        return grouped

    def attempts(self, rcpt: str) -> int:
        """How many times ``RCPT TO:<rcpt>`` was received (case-insensitive)."""
        with self._handler.cond:
            return self._handler.attempts[rcpt.casefold()]

    @property
    def stalling(self) -> int:
        """Number of scripted stalls in progress right now."""
        with self._handler.cond:
            return self._handler.stalling

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` messages were accepted.

        Raises ``TimeoutError`` after ``timeout`` seconds; that is a guard
        against hangs, not a performance expectation, so be generous.
        """
        self.wait_until(
            lambda: self._handler.count >= n,
            timeout,
            lambda: f"expected {n} message(s), got {self._handler.count}",
        )

    def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,
        describe: Callable[[], str] | None = None,
    ) -> None:
        """Block until ``predicate()`` holds; it is re-checked on every server event.

        The predicate runs with the server's state lock held, so it may use the
        accessors above.  Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        with self._handler.cond:
            if not self._handler.cond.wait_for(predicate, timeout):
                detail = describe() if describe is not None else "condition not met"
                raise TimeoutError(f"SmtpServer.wait_until timed out after {timeout}s: {detail}")

    # -- control -------------------------------------------------------------------------

    def enqueue(self, rcpt: str, *actions: str) -> None:
        """Append actions to ``rcpt``'s script (validated; ``ValueError`` if bad)."""
        self._handler.enqueue(rcpt, actions)

    def reset(self, script: Script | None = None) -> None:
        """Forget messages, counts and attempts, and install a new script.

        For reusing one server across tests.  The log file is not truncated.
        """
        self._handler.reset(script)


async def _abort_connections(handler: _Handler) -> None:
    for protocol in list(handler.connections):
        if isinstance(protocol.transport, asyncio.Transport):
            protocol.transport.abort()
    # Give connection_lost() and the cancelled session tasks a chance to run.
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0)


# --------------------------------------------------------------------------- CLI


def _write_atomically(path: Path, text: str) -> None:
    """Write via rename so a poller never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a server in the foreground until SIGTERM/SIGINT; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.smtpserver", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--ca-file", type=Path, help="copy the CA certificate (PEM) here")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="require AUTH")
    parser.add_argument("--sink", action="store_true", help="keep counts only")
    parser.add_argument("--log-file", type=Path, help="append one JSON line per message")
    parser.add_argument("--ready-file", type=Path, help="write the port here once serving")
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="wait this long after each final dot before replying"
    )
    parser.add_argument(
        "--no-pipelining", action="store_true", help="do not offer PIPELINING (offered by default, as Postfix does)"
    )
    args = parser.parse_args(argv)
    # aiosmtpd's own "Session.login_data is deprecated" warning on every AUTH
    # would otherwise reach stderr through logging's last-resort handler.
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    auth = None
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep:
            parser.error("--auth must be USER:PASSWORD")
        auth = (user, password)

    stop = threading.Event()
    # Install the handlers before serving, so an early SIGTERM still stops us cleanly.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    with SmtpServer(
        host=args.host,
        port=args.port,
        tls=args.tls,
        auth=auth,
        sink=args.sink,
        log_file=args.log_file,
        delay=args.delay_ms / 1000,
        pipelining=not args.no_pipelining,
    ) as server:
        if args.ca_file is not None and server.ca_path is not None:
            shutil.copyfile(server.ca_path, args.ca_file)
        if args.ready_file is not None:
            _write_atomically(args.ready_file, f"{server.port}\n")
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
