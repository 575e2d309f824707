"""What a pass or a sweep did: its decisions, counts per outcome, and why it stopped early."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailer.planning.plan import Planned

# Outcomes only the relay's own answer gives: a run with one of them has reached the relay.
RELAY_ANSWERED = ("sent", "retrying", "bounced", "unknown")


def relay_answered(counts: Mapping[str, int]) -> bool:
    """Whether a run's counts show the relay answering (a run with nothing to send says nothing about it)."""
    return any(counts.get(name) for name in RELAY_ANSWERED)


@dataclass
class PassReport:
    planned: list[Planned] = field(default_factory=list)
    expired: Counter[str] = field(default_factory=Counter)  # per campaign: deferrals logged expired after planning
    counts: Counter[str] = field(default_factory=Counter)
    deliveries: list[tuple[int, str]] = field(default_factory=list)  # (send-log id, server reply)
    stopped: str = ""  # why delivery stopped before the queue was empty, if it did
    relay_down: str = ""  # what the relay said when it could take no mail at all (the pass then stopped)

    @property
    def needs_a_human(self) -> bool:
        """The relay could not be used, or a row ended `failed` or `unknown`: cron should hear of it."""
        return bool(self.relay_down or self.counts.get("failed") or self.counts.get("unknown"))

    def summary(self) -> str:
        order = ("sent", "queued", "retrying", "deferred", "skipped", "failed", "bounced")
        text = ", ".join(f"{name} {self.counts.get(name, 0)}" for name in order)
        extras = [f"{name} {self.counts[name]}" for name in ("unknown", "held") if self.counts.get(name)]
        stopped = [f"stopped: {self.stopped}"] if self.stopped else []
        return ", ".join([text, *extras, *stopped])


CAPPED = "daily cap reached"
