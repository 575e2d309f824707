"""A real HTTP server on loopback that records every POST, and can be told to fail the first few."""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``with Receiver(fail_first=2) as r:`` → ``r.url``; ``r.calls`` holds the POSTs answered 2xx."""

    fail_first: int = 0
    stall: bool = False  # hold every request unanswered (until the receiver closes); ``waiting`` is set
    calls: list[Call] = field(default_factory=list)
    refused: list[Call] = field(default_factory=list)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                call = Call(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(size))
                if receiver.stall:
                    receiver.waiting.set()
                    receiver._release.wait(120)
                    return
                with receiver._lock:
                    failing = len(receiver.refused) < receiver.fail_first
                    (receiver.refused if failing else receiver.calls).append(call)
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self.waiting = threading.Event()
        self._release = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
