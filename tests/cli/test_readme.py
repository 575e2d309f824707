"""The README's "CLI at a glance" lists every command the CLI has, and nothing it does not."""

from __future__ import annotations

import re

import click

from mailer.cli import cli
from tests.conftest import REPO_ROOT


def commands(group: click.Group, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= commands(command, f"{prefix}{name} ")
            if command.invoke_without_command:  # `mailer feedback` runs on its own, too
                found.add(prefix + name)
        else:
            found.add(prefix + name)
    return found


def test_the_readme_lists_every_command_the_cli_has() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    glance = readme.split("## The CLI at a glance", 1)[1].split("```", 2)[1]
    groups = {name for name, c in cli.commands.items() if isinstance(c, click.Group)}
    listed = set()
    for line in glance.splitlines():
        words = re.findall(r"^mailer ([a-z-]+)(?: ([a-z-]+))?", line)
        if words:
            first, second = words[0]
            listed.add(f"{first} {second}" if first in groups and second else first)
    assert listed == commands(cli)
