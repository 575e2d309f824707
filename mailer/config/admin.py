"""``[admin]``: the password of the admin view, read from ``mailer.toml`` (the value itself only from env or a file)."""

from __future__ import annotations

from pathlib import Path

from mailer.config.reader import Table
from mailer.config.settings import AdminSettings


def parse_admin(top: Table, base: Path) -> AdminSettings:
    """Consume ``[admin]`` from the top table: ``password_env`` or ``password_file``, nothing else."""
    t = top.table("admin")
    settings = AdminSettings(password=t.secret("password", base))
    t.done()
    return settings
