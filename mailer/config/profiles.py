"""``[import.profile.NAME]``: the column mappings a business names once and uses with ``--profile NAME``.

Only the shape is checked here (types, choices, a date format that reads back what it
writes); whether a column name means something to mailer is checked by the import, which
knows its columns.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mailer.config.reader import Table
from mailer.config.settings import ImportProfile


def read_import_profiles(t: Table) -> tuple[ImportProfile, ...]:
    profiles = t.table("profile")
    found = [_profile(Table(t.file, f"import.profile.{name}", data), name) for name, data in profiles.data.items()]
    profiles.data.clear()
    t.done()
    return tuple(found)


def _profile(t: Table, name: str) -> ImportProfile:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise t.error("name", f"use letters, digits, '-', '_' or '.', got {name!r}")
    kind = t.choice("kind", "customers", ("customers", "interactions")) if "kind" in t.data else None
    profile = ImportProfile(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        columns=_pairs(t, "columns", '"File column" = "mailer column"'),
        defaults=_pairs(t, "defaults", 'column = "value"'),
        date_format=_date_format(t),
        match_by=t.choice("match_by", "external_id", ("external_id", "email")),  # type: ignore[arg-type]
        group_lines=t.flag("group_lines", False),
        tags_separator=t.text("tags_separator", ";"),
        unmapped=t.choice("unmapped", "attributes", ("attributes", "ignore")),  # type: ignore[arg-type]
        guest_ids=tuple(t.items("guest_ids", str, "strings")),
        without_email=t.choice("without_email", "bad", ("bad", "skip")),  # type: ignore[arg-type]
        origin=f"{t.file}: [{t.section}]",
    )
    if not profile.tags_separator:
        raise t.error("tags_separator", "must not be empty")
    t.done()
    return profile


def _pairs(t: Table, key: str, example: str) -> tuple[tuple[str, str], ...]:
    table = t._take(key, {}, (dict,), f"a table such as {{ {example} }}")
    pairs = []
    for source, target in table.items():
        if not isinstance(target, str) or not target.strip():
            raise t.error(key, f"{source!r}: expected a non-empty string, got {target!r}")
        pairs.append((str(source).strip(), target.strip()))
    return tuple(pairs)


def _date_format(t: Table) -> str | None:
    value: str | None = t.text("date_format", None)
    if value is None:
        return None
    if "%" not in value:
        raise t.error("date_format", f'expected a strptime format such as "%d/%m/%Y", got {value!r}')
    sample = datetime(2024, 3, 5, 14, 22, 1, tzinfo=UTC)
    try:
        datetime.strptime(sample.strftime(value), value)
    except ValueError:
        raise t.error("date_format", f"{value!r} cannot read back the dates it writes") from None
    return value
