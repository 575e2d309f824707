"""Rows out as an aligned table, CSV or JSON (for ``mailer log``, ``run --dry-run``, ``plan``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

FORMATS = ("table", "csv", "json")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def format_rows(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table", *, max_width: int = 60
) -> str:
    if fmt == "json":
        return json.dumps(
            [{h: _jsonable(v) for h, v in zip(headers, row, strict=True)} for row in rows], indent=2, ensure_ascii=False
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([[_cell(v) for v in row] for row in rows])
        return out.getvalue().rstrip("\n")
    cells = [[_clip(_cell(v), max_width) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
