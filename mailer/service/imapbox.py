"""``[inbox] kind = "imap"``: the returned mail in an IMAP folder, read over verified TLS with IMAPClient.

Messages are fetched with ``BODY.PEEK[]``, so mail left for a human stays unread. A handled
message is marked seen and moved (RFC 6851 MOVE; else COPY, then deleted and expunged by its
UID where the server has UIDPLUS) to ``processed_folder``, which is created when missing.
Anything the server or the network does wrong is an :class:`~mailer.errors.Unreachable`
error naming the server; the password appears in none of them.
"""

from __future__ import annotations

import functools
import imaplib
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any, Self, TypeVar

from imapclient import DELETED, SEEN, IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailer.config import ImapSettings
from mailer.errors import Unreachable
from mailer.service.letters import Letter

T = TypeVar("T")
_BATCH = 50  # messages fetched per round trip: few round trips, bounded memory

# What the network, TLS and the server raise; each becomes one line naming the server.
_FAILURES = (OSError, socket.timeout, ssl.SSLError, IMAPClientError, imaplib.IMAP4.abort)


class ImapBox:
    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.where = f"{settings.username}@{settings.host}:{settings.port}/{settings.folder}"
        self._client: Any = None

    def tls_context(self) -> ssl.SSLContext:
        """Certificates and host names verified; ``ca_file`` replaces the system's CAs (a private CA)."""
        ca_file = self.settings.ca_file
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def __enter__(self) -> Self:
        """Connect, log in, open the folder and make sure the processed folder exists; raises Unreachable."""
        s = self.settings
        password = s.password.reveal()  # a ConfigError (exit status 2) before any connection
        self._client = self._call("cannot connect", self._connect)
        try:
            if s.security == "starttls":
                if not self._call("cannot connect", lambda: self._client.has_capability("STARTTLS")):
                    raise Unreachable(f"{self.where}: the server does not offer STARTTLS; use security = \"tls\"")
                self._call("TLS failed", lambda: self._client.starttls(self.tls_context()))
            try:
                self._client.login(s.username, password)
            except LoginError as exc:
                raise Unreachable(f"{self.where}: login refused: {_words(exc)}") from None
            except _FAILURES as exc:
                raise Unreachable(f"{self.where}: login failed: {_words(exc)}") from None
            self._call(f"cannot open folder {s.folder!r}", lambda: self._client.select_folder(s.folder))
            if not self._call("cannot list folders", lambda: self._client.folder_exists(s.processed_folder)):
                self._call(f"cannot create folder {s.processed_folder!r}",
                           lambda: self._client.create_folder(s.processed_folder))
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def letters(self) -> Iterator[Letter]:
        client = self._client
        uids: list[int] = sorted(self._call("cannot search", lambda: client.search(["UNDELETED"])))
        for start in range(0, len(uids), _BATCH):
            batch = uids[start:start + _BATCH]
            fetched: dict[int, dict[bytes, Any]] = self._call(
                "cannot fetch messages", functools.partial(client.fetch, batch, ["BODY.PEEK[]"])
            )
            for uid in batch:
                data = fetched.get(uid, {}).get(b"BODY[]")
                if isinstance(data, bytes):  # gone meanwhile (another reader moved it): nothing to do
                    yield Letter(name=f"{self.settings.folder} UID {uid}", data=data, key=str(uid))

    def file_away(self, letter: Letter) -> None:
        client, uid, target = self._client, [int(letter.key)], self.settings.processed_folder
        self._call("cannot mark a message seen", lambda: client.add_flags(uid, [SEEN], silent=True))
        if client.has_capability("MOVE"):
            self._call(f"cannot move a message to {target!r}", lambda: client.move(uid, target))
            return
        self._call(f"cannot copy a message to {target!r}", lambda: client.copy(uid, target))
        self._call("cannot delete a moved message", lambda: client.add_flags(uid, [DELETED], silent=True))
        if client.has_capability("UIDPLUS"):
            self._call("cannot expunge a moved message", lambda: client.uid_expunge(uid))
        # Without UIDPLUS the copy stays flagged \Deleted for the user's client to expunge: a plain
        # EXPUNGE would also remove whatever else someone flagged, and searches skip it meanwhile.

    def _connect(self) -> Any:
        s = self.settings
        if s.security == "tls":
            return IMAPClient(s.host, port=s.port, ssl=True, ssl_context=self.tls_context(), timeout=s.timeout)
        return IMAPClient(s.host, port=s.port, ssl=False, timeout=s.timeout)

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except _FAILURES as exc:
            raise Unreachable(f"{self.where}: {what}: {_words(exc)}") from None

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with suppress(*_FAILURES):  # the connection may already be gone; there is nothing left to save
                client.logout()


def _words(exc: BaseException) -> str:
    """The error's own words on one line (IMAP errors arrive as bytes reprs)."""
    text = str(exc) or type(exc).__name__
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
        text = text[2:-1]
    return " ".join(text.split())
