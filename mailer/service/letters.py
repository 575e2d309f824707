"""What the inbox reads, whatever mailbox it comes from: a message's bytes, and the mailbox that holds it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Letter:
    """One message in a mailbox: its bytes, a name for the log, and what its mailbox finds it by."""

    name: str
    data: bytes
    key: str


class Mailbox(Protocol):
    """Where returned mail is read from; opened as a context manager for one pass."""

    where: str  # for the summary line, e.g. the Maildir's path or imaps://host/INBOX

    def letters(self) -> Iterator[Letter]:
        """Every message now in the mailbox, read without marking it seen."""
        ...

    def file_away(self, letter: Letter) -> None:
        """Move a handled message to the processed folder, bytes unchanged, marked seen."""
        ...
