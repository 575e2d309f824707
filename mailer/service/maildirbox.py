"""``[inbox] kind = "maildir"``: the Maildir a local mail server delivers returned mail to."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from mailer.errors import MailerError
from mailer.service.letters import Letter


class MaildirBox:
    """Reads ``new/`` and ``cur/``; handled mail goes to the ``processed`` Maildir's ``cur/``, marked seen."""

    def __init__(self, path: Path, processed: Path) -> None:
        self.path = path
        self.processed = processed
        self.where = str(path)

    def __enter__(self) -> Self:
        """Raises MailerError when the path is not a Maildir folder (a configuration problem)."""
        if not (self.path / "new").is_dir() or not (self.path / "cur").is_dir():
            raise MailerError(f"[inbox] path: {self.path} is not a Maildir folder (it needs new/ and cur/)")
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def letters(self) -> Iterator[Letter]:
        # Dot files are not messages (Maildir++ keeps subfolders, like the default processed one, as .Name).
        for sub in ("new", "cur"):
            for file in sorted((self.path / sub).iterdir()):
                if file.is_file() and not file.name.startswith("."):
                    yield Letter(name=file.name, data=file.read_bytes(), key=str(file))

    def file_away(self, letter: Letter) -> None:
        for sub in ("new", "cur", "tmp"):
            (self.processed / sub).mkdir(parents=True, exist_ok=True)
        file = Path(letter.key)
        name = file.name if ":2," in file.name else f"{file.name}:2,S"
        shutil.move(file, self.processed / "cur" / name)
