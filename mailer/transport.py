"""Where messages go: an SMTP relay, or a folder of real ``.eml`` files.

A transport is a context manager (the connection lives for a whole pass)
with one method, :meth:`Transport.send`, that never raises for a delivery
problem: it classifies the outcome (delivered, try again later, refused for
good) and returns the server's words, which go into the send log.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from mailer.config import TransportSettings
from mailer.message import FILE_POLICY, to_wire


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"  # 4xx, timeouts, dropped or refused connections: retry later
    PERMANENT = "permanent"  # 5xx: do not try again


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    reply: str
    code: int | None = None

    @property
    def user_unknown(self) -> bool:
        """A 5.1.x reply: the mailbox does not exist, so the address is suppressed."""
        return self.outcome is Outcome.PERMANENT and " 5.1." in f" {self.reply}"


class Transport(Protocol):
    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def send(self, envelope_from: str, to_address: str, msg: EmailMessage) -> SendResult: ...


class MaildirTransport:
    """Writes each message as ``<folder>/new/<unique>.eml``, atomically (tmp/ then rename)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._counter = 0

    def __enter__(self) -> Self:
        for sub in ("tmp", "new", "cur"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def send(self, envelope_from: str, to_address: str, msg: EmailMessage) -> SendResult:
        self._counter += 1
        unique = f"{time.time_ns()}.P{os.getpid()}Q{self._counter}.{socket.gethostname()}"
        tmp = self.folder / "tmp" / f"{unique}.eml"
        final = self.folder / "new" / f"{unique}.eml"
        try:
            with open(tmp, "wb") as handle:
                handle.write(msg.as_bytes(policy=FILE_POLICY))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            return SendResult(Outcome.TEMPORARY, f"cannot write {tmp}: {exc.strerror}")
        return SendResult(Outcome.DELIVERED, f"250 saved to {final}", 250)


class SmtpTransport:
    """One SMTP connection reused for a whole pass; reconnects after a drop.

    TLS certificates are verified (``ssl.create_default_context``); ``ca_file``
    adds a private CA without turning verification off.
    """

    def __init__(self, settings: TransportSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def tls_context(self) -> ssl.SSLContext:
        ca = str(self.settings.ca_file) if self.settings.ca_file else None
        return ssl.create_default_context(cafile=ca)

    def connect(self) -> smtplib.SMTP:
        s = self.settings
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self.tls_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=self.tls_context())
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password.reveal())
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
        """One SMTP transaction; every failure is classified, none is raised."""
        try:
            if self._smtp is None:
                self._smtp = self.connect()
            return self._transaction(self._smtp, envelope_from, to_address, to_wire(msg))
        except smtplib.SMTPAuthenticationError as exc:
            self._drop()
            return SendResult(Outcome.TEMPORARY, f"{exc.smtp_code} authentication failed: {_text(exc.smtp_error)}", exc.smtp_code)
        except smtplib.SMTPResponseException as exc:
            self._drop()
            return _classify(exc.smtp_code, _text(exc.smtp_error))
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            self._drop()
            return SendResult(Outcome.TEMPORARY, f"connection lost: {exc or type(exc).__name__}")
        except TimeoutError:
            self._drop()
            return SendResult(Outcome.TEMPORARY, f"timed out after {self.settings.timeout:g}s")
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            return SendResult(Outcome.TEMPORARY, f"TLS certificate refused: {exc.verify_message}")
        except ssl.SSLError as exc:
            self._drop()
            return SendResult(Outcome.TEMPORARY, f"TLS failed: {exc.reason or exc}")
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return SendResult(Outcome.TEMPORARY, f"{type(exc).__name__}: {exc}")

    def _transaction(self, smtp: smtplib.SMTP, sender: str, rcpt: str, data: bytes) -> SendResult:
        # mail/rcpt/data instead of sendmail(): we want the server's final reply for the log.
        code, reply = smtp.mail(sender, ["SMTPUTF8"] if _needs_smtputf8(sender, rcpt) else [])
        if code != 250:
            smtp.rset()
            return _classify(code, _text(reply))
        code, reply = smtp.rcpt(rcpt)
        if code not in (250, 251):
            smtp.rset()
            return _classify(code, _text(reply))
        code, reply = smtp.data(data)
        return _classify(code, _text(reply))

    def _drop(self) -> None:
        """Forget a connection in an unknown state; the next send reconnects."""
        if self._smtp is not None:
            try:
                self._smtp.close()
            except OSError:
                pass
            self._smtp = None


def _needs_smtputf8(*addresses: str) -> bool:
    return not all(a.isascii() for a in addresses)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _classify(code: int, text: str) -> SendResult:
    reply = " ".join(f"{code} {text}".split())
    if 200 <= code < 300:
        return SendResult(Outcome.DELIVERED, reply, code)
    if 500 <= code < 600:
        return SendResult(Outcome.PERMANENT, reply, code)
    return SendResult(Outcome.TEMPORARY, reply, code)


def make_transport(settings: TransportSettings, out_dir: Path | None = None) -> Transport:
    """The configured transport; ``out_dir`` forces a maildir folder (dry runs, tests)."""
    if out_dir is not None:
        return MaildirTransport(out_dir)
    if settings.kind == "smtp":
        return SmtpTransport(settings)
    return MaildirTransport(settings.path)
