"""The HTTP API's bearer keys: made once and shown once, kept only as a SHA-256, listed, revoked.

A key is 32 random bytes (``mk_`` + URL-safe base64), so a plain SHA-256 is enough to
keep it: nobody can guess such a key from its hash, and a lookup by hash is one indexed
query (a slow password hash would only make every API call slow).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.errors import MailerError
from mailer.store.tables import ApiKey, utcnow

PREFIX = "mk_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class KeyProblem(MailerError):
    """A key name that cannot be used (bad, taken, unknown)."""


class Verdict(StrEnum):
    GOOD = "good"
    UNKNOWN = "unknown"  # no key, or one mailer never made: 401
    REVOKED = "revoked"  # a key mailer made and later revoked: 403


@dataclass(frozen=True)
class KeyInfo:
    name: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create(engine: Engine, name: str, now: datetime | None = None) -> str:
    """A new key named ``name``; the key itself is returned once and never stored."""
    if not _NAME.fullmatch(name):
        rule = "use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        raise KeyProblem(f"key name {name!r}: {rule}")
    key = PREFIX + secrets.token_urlsafe(32)
    with Session(engine) as session:
        if session.execute(select(col(ApiKey.id)).where(col(ApiKey.name) == name)).first() is not None:
            raise KeyProblem(f"an API key named {name!r} exists already (revoke it, or choose another name)")
        session.add(ApiKey(name=name, key_hash=digest(key), created_at=now or utcnow()))
        session.commit()
    return key


def listing(engine: Engine) -> list[KeyInfo]:
    with Session(engine) as session:
        rows = session.execute(select(ApiKey).order_by(col(ApiKey.name))).scalars().all()
        return [KeyInfo(k.name, k.created_at, k.revoked_at, k.last_used_at) for k in rows]


def revoke(engine: Engine, name: str, now: datetime | None = None) -> bool:
    """Revoke the key ``name``; False when it was revoked already. Raises KeyProblem for an unknown name."""
    with Session(engine) as session:
        key = session.execute(select(ApiKey).where(col(ApiKey.name) == name)).scalar_one_or_none()
        if key is None:
            raise KeyProblem(f"no API key named {name!r} (see mailer api-key list)")
        if key.revoked_at is not None:
            return False
        key.revoked_at = now or utcnow()
        session.add(key)
        session.commit()
    return True


def check(engine: Engine, key: str | None, now: datetime | None = None) -> tuple[Verdict, str | None]:
    """Whether ``key`` may use the API, and the name of the key it is."""
    if not key or not key.startswith(PREFIX):
        return Verdict.UNKNOWN, None
    wanted = digest(key)
    with Session(engine) as session:
        found = session.execute(select(ApiKey).where(col(ApiKey.key_hash) == wanted)).scalar_one_or_none()
        # The indexed lookup already matched; compare again in constant time so no timing tells a near miss.
        if found is None or not hmac.compare_digest(found.key_hash, wanted):
            return Verdict.UNKNOWN, None
        if found.revoked_at is not None:
            return Verdict.REVOKED, found.name
        found.last_used_at = now or utcnow()
        session.add(found)
        session.commit()
        return Verdict.GOOD, found.name
