"""Where messages go: an SMTP relay, or a folder of real ``.eml`` files.

A transport is a context manager (the connection lives for a whole pass)
with one method, :meth:`Transport.send`, that never raises for a delivery
problem: it classifies the outcome (delivered, try again later, refused for
good) and returns the server's words, which go into the send log.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from mailer.addresses import AddressError, ascii_domain, needs_smtputf8, wire_address
from mailer.compose.message import to_file, to_wire
from mailer.config import TransportSettings


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"  # 4xx, timeouts, dropped or refused connections before the end of DATA: retry later
    PERMANENT = "permanent"  # 5xx about this recipient or message: do not try again
    UNKNOWN = "unknown"  # lost after the final dot: the relay may have the message, so never resent on its own
    IMPOSSIBLE = "impossible"  # this relay can never carry this message (SMTPUTF8 not offered): give up now


class Stage(StrEnum):
    """How far an SMTP attempt got: it says whose problem a failure is."""

    CONNECT = "connect"  # connection, TLS, EHLO, AUTH: the relay or our settings, never the recipient
    MAIL = "mail"  # MAIL FROM: about our sender address, never the recipient
    RCPT = "rcpt"
    DATA = "data"  # DATA sent, the message on its way: nothing is accepted before its final dot
    REPLY = "reply"  # the final dot sent: from here on the relay may have accepted the message
    DONE = "done"


NO_SMTPUTF8 = "the relay does not support SMTPUTF8, which this message needs (an address whose local part is not ASCII)"
MAYBE_DELIVERED = "the relay may have accepted it, so it is not resent without `mailer requeue`"

# Enhanced status codes (RFC 3463) 5.1.x that say the recipient's address does not exist.
# 5.1.7 and 5.1.8 are about the *sender's* address and must not suppress anyone.
_NO_SUCH_RECIPIENT = re.compile(r"^5\d\d[ -]5\.1\.(?:1|2|3|6|10)\b")


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    reply: str
    code: int | None = None
    stage: Stage = Stage.DONE

    @property
    def user_unknown(self) -> bool:
        """A 5.1.x "no such mailbox" reply to this recipient: the address is suppressed."""
        return (
            self.outcome is Outcome.PERMANENT
            and self.stage in (Stage.RCPT, Stage.DATA)
            and _NO_SUCH_RECIPIENT.match(self.reply) is not None
        )

    @property
    def relay_unusable(self) -> bool:
        """The relay cannot take any message right now (down, TLS, AUTH, sender refused).

        Trying the rest of the queue would only repeat the failure, so a pass stops.
        Anything about one recipient or one message (RCPT, DATA, SMTPUTF8) is not this.
        """
        return self.outcome is Outcome.TEMPORARY and self.stage in (Stage.CONNECT, Stage.MAIL)


class Transport(Protocol):
    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def send(self, envelope_from: str, to_address: str, msg: EmailMessage) -> SendResult: ...


@runtime_checkable
class WireTransport(Transport, Protocol):
    """A transport that also takes messages already serialised (rendered ahead, in another process)."""

    def send_wire(self, envelope_from: str, to_address: str, data: bytes) -> SendResult:
        """Like :meth:`send`, for the bytes of :func:`mailer.compose.message.to_wire` (CRLF line ends)."""
        ...


class MaildirTransport:
    """Writes each message as ``<folder>/new/<unique>.eml``, atomically (tmp/ then rename)."""

    def __init__(self, folder: Path, sign: Callable[[bytes], bytes] | None = None) -> None:
        self.folder = folder
        self.sign = sign  # DKIM, applied to the bytes exactly as written
        self._counter = itertools.count(1)  # next() on a count is atomic: safe for several threads

    def __enter__(self) -> Self:
        for sub in ("tmp", "new", "cur"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def send(self, envelope_from: str, to_address: str, msg: EmailMessage) -> SendResult:
        return self._write(to_file(msg))

    def send_wire(self, envelope_from: str, to_address: str, data: bytes) -> SendResult:
        # The wire form differs from the file form only in its line ends (bodies are
        # quoted-printable, so no bare CR or LF is part of the content).
        return self._write(data.replace(b"\r\n", b"\n"))

    def _write(self, data: bytes) -> SendResult:
        unique = f"{time.time_ns()}.P{os.getpid()}Q{next(self._counter)}.{socket.gethostname()}"
        tmp = self.folder / "tmp" / f"{unique}.eml"
        final = self.folder / "new" / f"{unique}.eml"
        try:
            with open(tmp, "wb") as handle:
                handle.write(self.sign(data) if self.sign else data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            # A folder we cannot write to refuses every message alike: stop the pass.
            return SendResult(Outcome.TEMPORARY, f"cannot write {tmp}: {exc.strerror}", stage=Stage.CONNECT)
        return SendResult(Outcome.DELIVERED, f"250 saved to {final}", 250)


class SmtpTransport:
    """One SMTP connection reused for many messages; reconnects after a drop.

    Not thread-safe: each sending thread has its own transport. TLS
    certificates are always verified (``ssl.create_default_context``);
    ``ca_file`` adds a private CA without turning verification off. With
    ``security = "starttls"`` a server that does not offer STARTTLS is an
    error, never a reason to go on in clear text.
    """

    def __init__(self, settings: TransportSettings, sign: Callable[[bytes], bytes] | None = None) -> None:
        self.settings = settings
        self.sign = sign  # DKIM, applied to the bytes exactly as sent
        self._smtp: _SMTP | None = None
        self._password: str | None = None

    def __enter__(self) -> Self:
        # Read the password before any row is claimed: a missing secret is a
        # configuration error to report, not a reason to leave rows `sending`.
        if self.settings.username:
            self._password = self.settings.password.reveal()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def tls_context(self) -> ssl.SSLContext:
        ca = str(self.settings.ca_file) if self.settings.ca_file else None
        return ssl.create_default_context(cafile=ca)

    def connect(self, from_domain: str = "") -> _SMTP:
        """A ready session (TLS and AUTH done); raises smtplib/ssl/OS errors."""
        s = self.settings
        helo = s.helo_name or default_helo_name(from_domain)
        smtp: _SMTP
        if s.security == "tls":
            smtp = _SMTP_SSL(s.host, s.port, local_hostname=helo, timeout=s.timeout, context=self.tls_context())
        else:
            smtp = _SMTP(s.host, s.port, local_hostname=helo, timeout=s.timeout)
        smtp.final_reply_timeout = max(s.final_reply_timeout, s.timeout)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=self.tls_context())
                smtp.ehlo()
            if s.username:
                if s.security == "none":  # config refuses this too; never send a password in clear
                    raise smtplib.SMTPException("refusing to send the password over an unencrypted connection")
                smtp.login(s.username, self._password or s.password.reveal())
        except BaseException:
            smtp.close()
            raise
        return smtp

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None

    def send(self, envelope_from: str, to_address: str, msg: EmailMessage) -> SendResult:
        """One SMTP transaction; every failure is classified, none is raised.

        A reused connection that turns out to be closed before MAIL FROM was
        accepted (the server timed out an idle session) is reopened once:
        nothing was sent on it, so trying again cannot duplicate anything.
        """
        return self.send_wire(envelope_from, to_address, to_wire(msg))

    def send_wire(self, envelope_from: str, to_address: str, data: bytes) -> SendResult:
        """:meth:`send` for a message already serialised for the wire."""
        if self.sign:
            data = self.sign(data)
        try:
            sender, rcpt = wire_address(envelope_from), wire_address(to_address)
        except AddressError as exc:
            return SendResult(Outcome.IMPOSSIBLE, str(exc), stage=Stage.RCPT)
        reused = self._smtp is not None
        result = self._attempt(sender, rcpt, data)
        if reused and result.stage is Stage.MAIL and self._smtp is None and result.code is None:
            result = self._attempt(sender, rcpt, data)
        return result

    def _attempt(self, sender: str, rcpt: str, data: bytes) -> SendResult:
        stage = Stage.CONNECT
        smtp: _SMTP | None = None
        try:
            if self._smtp is None:
                self._smtp = self.connect(sender.rpartition("@")[2])
            smtp = self._smtp
            options: list[str] = []
            if needs_smtputf8(sender) or needs_smtputf8(rcpt) or not _head(data).isascii():
                if not smtp.has_extn("smtputf8"):
                    # Nothing was sent for this message: the session stays ready for the next one.
                    return SendResult(Outcome.IMPOSSIBLE, NO_SMTPUTF8, stage=Stage.RCPT)
                options = ["SMTPUTF8", *(["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else [])]
            commands = smtp.envelope(sender, options, rcpt)
            refused = self._send_envelope(smtp, commands)
            if refused is not None:
                return refused
            stage = Stage.DATA
            code, reply = smtp.content(data)
            if not 200 <= code < 600:
                # A reply smtplib could not read (-1): only a real 4xx or 5xx proves the relay did not take it.
                self._drop()
                reason = f"unreadable reply {_text(reply)!r}: {MAYBE_DELIVERED}"
                return SendResult(Outcome.UNKNOWN, reason, code, Stage.REPLY)
            if code == 421:
                self._drop()
            return _classify(code, _text(reply), Stage.DATA)
        except (OSError, smtplib.SMTPException) as exc:
            if stage is Stage.DATA and smtp is not None and smtp.final_dot_sent:
                self._drop()
                if isinstance(exc, smtplib.SMTPResponseException):
                    # smtplib's own "500 Line too long" about the relay's reply, not the relay's word
                    return SendResult(Outcome.UNKNOWN, f"{_text(exc.smtp_error)}: {MAYBE_DELIVERED}", stage=Stage.REPLY)
                return self._failed(Stage.REPLY, exc)
            return self._broken(stage, exc)

    def _send_envelope(self, smtp: _SMTP, commands: tuple[bytes, bytes, bytes]) -> SendResult | None:
        """MAIL FROM, RCPT TO and DATA; None when DATA is answered 354 (the message goes next).

        Otherwise the refusal or the failure, classified by the command it answered, with the
        session reset or dropped. When the relay offers PIPELINING (RFC 2920) the three go in one
        write and their replies are read in order; the first refusal decides, by its stage, and the
        replies to the commands after it are still read (3.1) before the session is reset. Without
        it, each command is sent once the one before was accepted. The results are the same.
        """
        pipelined = smtp.has_extn("pipelining")
        # Each command's stage, the replies that accept it, and how many commands follow it.
        stages, accepting, following = (Stage.MAIL, Stage.RCPT, Stage.DATA), ((250,), (250, 251), (354,)), (2, 1, 0)
        steps = zip(stages, commands, accepting, following, strict=True)
        stage = Stage.MAIL
        try:
            if pipelined:
                smtp.send(b"".join(commands))
            for stage, command, accepted, after in steps:
                code, reply = smtp.getreply() if pipelined else smtp.command(command)
                if code not in accepted:
                    return self._refused(stage, code, reply, owed=after if pipelined else 0)
        except (OSError, smtplib.SMTPException) as exc:
            return self._broken(stage, exc)
        return None

    def _broken(self, stage: Stage, exc: OSError | smtplib.SMTPException) -> SendResult:
        """The session failed before the final dot: drop it; never ``unknown``, nothing can have been delivered."""
        self._drop()
        if isinstance(exc, smtplib.SMTPResponseException):  # a refusal raised by smtplib (EHLO, AUTH, ...)
            return _classify(exc.smtp_code, _text(exc.smtp_error), stage)
        return self._failed(stage, exc)

    def _failed(self, stage: Stage, exc: BaseException) -> SendResult:
        """A connection, TLS or protocol failure: temporary, unless the relay may already have the message."""
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            # smtplib re-raises a read timeout as a disconnect
            waited = self.settings.timeout
            if stage is Stage.REPLY:
                waited = max(self.settings.final_reply_timeout, waited)
            what = f"timed out after {waited:g}s"
        elif isinstance(exc, smtplib.SMTPServerDisconnected):
            what = f"connection lost: {exc or 'closed by the server'}"
        elif isinstance(exc, ssl.SSLCertVerificationError):  # never fall back to clear text
            what = f"TLS certificate refused: {exc.verify_message}"
        elif isinstance(exc, ssl.SSLError):
            what = f"TLS failed: {exc.reason or exc}"
        elif isinstance(exc, smtplib.SMTPNotSupportedError):
            what = f"server does not support it: {exc}"
        else:  # refused or reset connections, DNS failures
            what = f"{type(exc).__name__}: {exc}"
        if stage is Stage.REPLY:
            reason = f"{what} after the whole message was sent: {MAYBE_DELIVERED}"
            return SendResult(Outcome.UNKNOWN, reason, stage=stage)
        return SendResult(Outcome.TEMPORARY, what, stage=stage)

    def _refused(self, stage: Stage, code: int, reply: bytes | str, owed: int = 0) -> SendResult:
        """MAIL, RCPT or the DATA command refused: reset the session for the next message (or drop it after a 421).

        ``owed``: how many commands were pipelined after the refused one; their replies are read first.
        """
        if code == 421:  # the server closes the connection after a 421 (RFC 5321 3.8)
            self._drop()
        elif self._smtp is not None:
            try:
                self._smtp.read_owed(owed)
                self._smtp.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        return _classify(code, _text(reply), stage)

    def _drop(self) -> None:
        """Forget a connection in an unknown state; the next send reconnects."""
        if self._smtp is not None:
            with contextlib.suppress(OSError):
                self._smtp.close()
            self._smtp = None


# An address smtplib's quoteaddr would only put in angle brackets (it parses every one with email.utils).
_PLAIN_ADDRESS = re.compile(r"[^<>()\[\]\\,;:\s@\"]+@[^<>()\[\]\\,;:\s@\"]+")


class _SMTP(smtplib.SMTP):
    """smtplib's session, with MAIL, RCPT and DATA written by mailer: as one write when pipelined.

    The command lines are what smtplib's ``mail`` and ``rcpt`` would send, without its per-message
    parsing: ``quoteaddr`` parses each address with the email package and ``data`` dot-stuffs with
    a multi-line regular expression, which at hundreds of messages a second on one core was a sixth
    of the sending thread's time. An address that is not plain takes smtplib's ``quoteaddr``.

    ``final_dot_sent`` says whether the last message got as far as its final dot:
    a failure before it cannot have delivered anything, a failure after it may have.
    """

    final_dot_sent = False
    final_reply_timeout: float | None = None  # how long the relay may take to answer the final dot

    def envelope(self, sender: str, options: Sequence[str], rcpt: str) -> tuple[bytes, bytes, bytes]:
        """The MAIL FROM, RCPT TO and DATA command lines of one message, as they go on the wire."""
        mail = f"MAIL FROM:{_angle_address(sender)}{''.join(f' {o}' for o in options)}"
        rcpt_to = f"RCPT TO:{_angle_address(rcpt)}"
        if any(c in mail + rcpt_to for c in "\r\n"):  # as smtplib's putcmd: no command smuggled in
            raise ValueError("command and arguments contain prohibited newline characters")
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        return f"{mail}\r\n".encode(encoding), f"{rcpt_to}\r\n".encode(encoding), b"DATA\r\n"

    def command(self, line: bytes) -> tuple[int, bytes]:
        """Send one command line and read its reply."""
        self.send(line)
        return self.getreply()

    def read_owed(self, owed: int) -> None:
        """Read the replies to the last ``owed`` commands of a pipelined group whose transaction was refused.

        A DATA the relay accepted all the same (354, although MAIL or RCPT was refused) gets a
        lone dot at once, as RFC 2920 3.1 asks: an empty message for no accepted recipient, whatever
        the relay answers to it, and never this message's content.
        """
        code = 0
        for _ in range(owed):
            code, _reply = self.getreply()
        if code == 354:
            self.command(b".\r\n")

    def content(self, msg: bytes) -> tuple[int, bytes]:
        """After DATA's 354: the message (dot-stuffed), its final dot, and the relay's reply to it."""
        self.final_dot_sent = False
        stuffed = msg.replace(b"\n.", b"\n..")  # smtplib: re.sub(rb"(?m)^\.", b"..", msg)
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self.send(stuffed + b".\r\n")
        # From here on the relay may have the message, whatever happens to its reply.
        self.final_dot_sent = True
        if self.sock is not None and self.final_reply_timeout:
            self.sock.settimeout(self.final_reply_timeout)
        try:
            return self.getreply()
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)


class _SMTP_SSL(_SMTP, smtplib.SMTP_SSL):  # named after the class it extends
    pass


@functools.cache
def default_helo_name(from_domain: str = "") -> str:
    """The machine's FQDN when it is a real one (has a dot, is not localhost), else the From domain.

    Filters score a HELO name that does not resolve, and ``localhost`` never does.
    Looked up once: smtplib would otherwise resolve it for every connection.
    """
    fqdn = socket.getfqdn()
    if "." in fqdn and not fqdn.startswith("localhost"):
        return fqdn
    return ascii_domain(from_domain) if from_domain else fqdn


def _angle_address(address: str) -> str:
    return f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)


def _head(data: bytes) -> bytes:
    """The header block of a message on the wire."""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[:end]


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _classify(code: int, text: str, stage: Stage) -> SendResult:
    """2xx delivered; 5xx about the recipient or message permanent; everything else temporary.

    A 5xx before RCPT (EHLO, AUTH, MAIL FROM) is about our side, not the
    recipient: it is retried (and the pass stops) rather than bouncing mail.
    """
    reply = " ".join(f"{code} {text}".split())
    if 200 <= code < 300:
        return SendResult(Outcome.DELIVERED, reply, code, stage)
    if 500 <= code < 600 and stage in (Stage.RCPT, Stage.DATA):
        return SendResult(Outcome.PERMANENT, reply, code, stage)
    return SendResult(Outcome.TEMPORARY, reply, code, stage)


def make_transport(
    settings: TransportSettings, out_dir: Path | None = None, sign: Callable[[bytes], bytes] | None = None
) -> Transport:
    """The configured transport; ``out_dir`` forces a maildir folder (dry runs, tests); ``sign`` adds DKIM."""
    if out_dir is not None:
        return MaildirTransport(out_dir, sign)
    if settings.kind == "smtp":
        return SmtpTransport(settings, sign)
    return MaildirTransport(settings.path, sign)
