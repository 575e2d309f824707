"""Loopback ports for the private servers the tests start (Postfix, Dovecot, a metrics port)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's pick, released for a server to bind).

    Another process could take it in between; then that server fails to start, loudly, never silently.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` (within a second)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
