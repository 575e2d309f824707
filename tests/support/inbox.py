"""The returned-mail samples in tests/support/data/inbox/, filled in for one recipient and one sent message."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

SAMPLES = Path(__file__).parent / "data" / "inbox"


def sample_bytes(name: str, recipient: str, message_id: str = "<occasion-ref@northwind.example>") -> bytes:
    """The sample ``name``.eml with its ``{{RECIPIENT}}`` and ``{{MESSAGE_ID}}`` filled in."""
    text = (SAMPLES / f"{name}.eml").read_text(encoding="utf-8")
    return text.replace("{{RECIPIENT}}", recipient).replace("{{MESSAGE_ID}}", message_id).encode()


def sample(name: str, recipient: str, message_id: str = "<occasion-ref@northwind.example>") -> Message:
    return message_from_bytes(sample_bytes(name, recipient, message_id), policy=policy.compat32)
