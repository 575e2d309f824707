"""Typed, consuming access to a TOML table and its values, so that leftovers are reported as typos."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from mailer.config.settings import ConfigError, Secret, suggest

T = TypeVar("T")


class Table:
    """Typed, consuming access to one TOML table, so leftovers can be reported as typos."""

    def __init__(self, file: str, section: str, data: Any) -> None:
        self.file = file
        self.section = section
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: [{section}]: expected a table")
        self.data = dict(data)
        self.known: list[str] = []

    def error(self, key: str, problem: str) -> ConfigError:
        where = f"[{self.section}] " if self.section else ""
        return ConfigError(f"{self.file}: {where}{key}: {problem}")

    def _take(self, key: str, default: T, kinds: tuple[type, ...], kind_name: str) -> Any:
        self.known.append(key)
        if key not in self.data:
            return default
        value = self.data.pop(key)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {kind_name}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {kind_name}, got {value!r}")
        return value

    def text(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        if required and key not in self.data:
            self.known.append(key)
            raise self.error(key, "is required")
        value = self._take(key, default, (str,), "a string")
        if isinstance(value, str) and required and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = 0) -> int:
        value: int = self._take(key, default, (int,), "an integer")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0) -> float:
        value = float(self._take(key, default, (int, float), "a number"))
        if value < minimum:
            raise self.error(key, f"must be at least {minimum:g}, got {value:g}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self._take(key, default, (bool,), "true or false")
        return value

    def items(self, key: str, item: type, item_name: str) -> list[Any]:
        value = self._take(key, [], (list,), f"a list of {item_name}")
        for element in value:
            if isinstance(element, bool) or not isinstance(element, item):
                raise self.error(key, f"expected a list of {item_name}, got {element!r}")
        return list(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value: str = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}{suggest(value, choices)}")
        return value

    def duration(self, key: str, default: timedelta) -> timedelta:
        value = self._take(key, None, (str, int), 'a duration such as "30m", "6h" or "3d"')
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def clock(self, key: str, default: time) -> time:
        value = self.text(key, None)
        if value is None:
            return default
        try:
            return time.fromisoformat(value)
        except ValueError:
            raise self.error(key, f'expected a time of day like "09:00", got {value!r}') from None

    def path(self, key: str, default: Path | None, base: Path) -> Path | None:
        value = self.text(key, None)
        if value is None:
            return default if default is None or default.is_absolute() else base / default
        return (base / Path(value).expanduser()).resolve()

    def secret(self, prefix: str, base: Path) -> Secret:
        env = self.text(f"{prefix}_env")
        file = self.path(f"{prefix}_file", None, base)
        if prefix in self.data:
            raise self.error(prefix, f"secrets never live in the file; use {prefix}_env or {prefix}_file")
        if env and file:
            raise self.error(f"{prefix}_env", f"set {prefix}_env or {prefix}_file, not both")
        where = f"[{self.section}] {prefix}_env" if env else f"[{self.section}] {prefix}_file"
        return Secret(env=env, file=file, origin=f"{self.file}: {where}")

    def table(self, key: str) -> Table:
        self.known.append(key)
        return Table(self.file, key, self.data.pop(key, {}))

    def array_of_tables(self, key: str) -> list[Any]:
        self.known.append(key)
        value = self.data.pop(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"use [[{key}]] tables")
        return value

    def done(self) -> None:
        """Reject keys nobody asked for: they are typos or misplaced settings."""
        for key in self.data:
            raise self.error(key, f"unknown key{suggest(key, self.known)}")



# RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"


HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: str | int) -> timedelta:
    """``"30m"``, ``"6h"``, ``"3d"``, ``"45s"`` or a number of seconds."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"must be positive, got {value}")
        return timedelta(seconds=value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f'expected a duration such as "30m", "6h" or "3d", got {value!r}')
    amount = float(match.group(1))
    if amount <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def email_value(table: Table, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise table.error(key, f"not a valid address ({exc})") from None


def zone_value(table: Table, key: str, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.error(key, f"unknown time zone {value!r}") from None
    return value
