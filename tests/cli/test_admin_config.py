"""``[admin]`` mistakes are one line naming the file, section and key, and stop the CLI with exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import cli


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('pasword_env = "X"', "error: mailer.toml: [admin] pasword_env: unknown key (did you mean 'password_env'?)"),
        ('user = "root"\npassword_env = "X"', "error: mailer.toml: [admin] user: unknown key"),
        (
            'password_env = "X"\npassword_file = "admin.secret"',
            "error: mailer.toml: [admin] password_env: set password_env or password_file, not both",
        ),
        (
            'password = "hunter2"',
            "error: mailer.toml: [admin] password: secrets never live in the file; use password_env or password_file",
        ),
    ],
)
def test_a_bad_admin_setting_is_one_line_naming_the_key(project: Path, lines: str, message: str) -> None:
    project.write_text(project.read_text(encoding="utf-8") + f"\n[admin]\n{lines}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(project), "log"])
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert "Traceback" not in result.output
    assert "hunter2" not in result.output
