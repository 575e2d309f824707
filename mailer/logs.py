"""Logging for commands that run unattended: one line per event on stderr, JSON lines when asked.

Events carry their facts in ``extra={"fields": {...}}``; the plain format shows
the message, the JSON format adds the fields as keys for log collectors.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(*, verbose: bool, json_lines: bool) -> None:
    """Route every logger to stderr: INFO and up with ``verbose``, WARNING and up otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter(PLAIN))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)


def events(name: str) -> logging.Logger:
    """A logger whose events are always shown (the daemon's and the pass's own account of what it did)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    return logger
