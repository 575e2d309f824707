"""Run the real ``mailer serve`` in a subprocess on a free loopback port, and talk HTTP to it."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MAILER = Path(sys.executable).with_name("mailer")


@dataclass
class Reply:
    status: int
    body: str
    headers: dict[str, str]


class Served:
    """``mailer --config CONFIG serve --port 0``; ``base`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.config = config
        # The server's log goes to a file: an unread pipe would fill up and stall the server.
        self.log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [str(MAILER), "--config", str(config), "serve", "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.base = self._wait_for_address(timeout=60)

    def _wait_for_address(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if selector.select(timeout=0.5):
                    line = self.proc.stdout.readline()
                    if line.startswith("serving on "):
                        return line.split()[2].rstrip("/")
                    if not line and self.proc.poll() is not None:
                        break
        if self.proc.poll() is None:
            self.stop()
            raise RuntimeError(f"mailer serve printed no address within {timeout:g}s")
        self.log.seek(0)
        errors = self.log.read()
        self.stop()
        raise RuntimeError(f"mailer serve did not start: {errors}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        return self.proc.returncode

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        route, mark, query = path.partition("?")  # the query string is the caller's, already encoded
        req = urllib.request.Request(
            self.base + urllib.parse.quote(route, safe="/") + mark + query, data=data, method=method,
            headers=headers or {},
        )
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return Reply(response.status, response.read().decode(), dict(response.headers))
        except urllib.error.HTTPError as exc:
            with exc:
                return Reply(exc.code, exc.read().decode(), dict(exc.headers))

    def one_click(self, token: str) -> Reply:
        return self.request(
            "POST",
            f"/u/{token}",
            b"List-Unsubscribe=One-Click",
            "application/x-www-form-urlencoded",
        )
