"""A loopback TCP relay in front of a server that records what each side wrote, one entry per read.

For counting round trips honestly, whatever the server: a client that pipelines sends MAIL FROM,
RCPT TO and DATA in one write, and they arrive here in one read; a client that waits for each
reply cannot have two commands arrive together. Plain TCP: over TLS the records are ciphertext.

Use::

    with Wiretap(server.host, server.port) as tap:
        ...  # point the client at tap.host / tap.port
    tap.reads  # [b"EHLO ...\\r\\n", b"MAIL FROM:<a@x>\\r\\nRCPT TO:<b@y>\\r\\nDATA\\r\\n", ...]
    tap.replies  # what the server answered, the same way
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

__all__ = ["Wiretap"]


class Wiretap:
    """Listens on ``127.0.0.1``, connects each client to ``target_host:target_port`` and relays both ways."""

    host = "127.0.0.1"

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._reads: list[bytes] = []
        self._replies: list[bytes] = []
        self._connections = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def __enter__(self) -> Wiretap:
        self._start(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads[:1]:  # the acceptor: no new connection after this
            thread.join()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads[1:]:
            thread.join()
        for sock in [*sockets, self._listener]:
            sock.close()

    @property
    def reads(self) -> list[bytes]:
        """What clients sent, one entry per read, in the order it arrived (all connections)."""
        with self._lock:
            return list(self._reads)

    @property
    def replies(self) -> list[bytes]:
        """What the server sent back, one entry per read, in the order it arrived (all connections)."""
        with self._lock:
            return list(self._replies)

    @property
    def connections(self) -> int:
        """How many connections clients opened."""
        with self._lock:
            return self._connections

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            server = socket.create_connection(self._target)
            for sock in (client, server):  # pass each write on at once, as the two ends would see it
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections += 1
                self._sockets += [client, server]
            self._start(self._pump, client, server, self._reads)
            self._start(self._pump, server, client, self._replies)

    def _pump(self, source: socket.socket, sink: socket.socket, record: list[bytes]) -> None:
        try:
            while chunk := source.recv(65536):
                with self._lock:
                    record.append(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)  # pass the end of the stream on, as the other side sent it
