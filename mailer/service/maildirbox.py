"""``[inbox] kind = "maildir"``: the Maildir a local mail server delivers returned mail to."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from mailer.errors import MailerError, Unreachable
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
        """Raises Unreachable when a folder or a message cannot be read (permissions, a failing disk)."""
        for sub in ("new", "cur"):
            try:
                files = sorted((self.path / sub).iterdir())
            except OSError as exc:
                raise Unreachable(f"[inbox] path: cannot list {self.path / sub}: {exc.strerror}") from None
            # Dot files are not messages (Maildir++ keeps subfolders, like the default processed one, as .Name).
            for file in (f for f in files if not f.name.startswith(".")):
                try:
                    data = file.read_bytes()
                except FileNotFoundError:
                    continue  # moved meanwhile (another reader, the user's mail client): not ours any more
                except IsADirectoryError:
                    continue
                except OSError as exc:
                    raise Unreachable(f"[inbox] path: cannot read {file}: {exc.strerror}") from None
                yield Letter(name=file.name, data=data, key=str(file))

    def file_away(self, letter: Letter) -> None:
        file = Path(letter.key)
        name = file.name if ":2," in file.name else f"{file.name}:2,S"
        try:
            for sub in ("new", "cur", "tmp"):
                (self.processed / sub).mkdir(parents=True, exist_ok=True)
            shutil.move(file, self.processed / "cur" / name)  # a rename, unless processed is on another disk
        except FileNotFoundError:
            return  # another reader moved it first: it is handled either way
        except OSError as exc:
            raise Unreachable(f"[inbox] processed: cannot move {file.name} there: {exc.strerror}") from None
