"""A token bucket: at most ``rate`` messages a second, shared by every sending thread.

The clock and the sleep are injectable, so tests check the pacing against a
fake clock instead of the wall clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Longest single sleep while waiting for a token, so a stop request is noticed promptly.
_MAX_NAP = 0.25
# Refilling by elapsed * rate leaves float dust (0.9999999...); a token that close is a token.
_EPSILON = 1e-9


class TokenBucket:
    """Grants :meth:`acquire` at most ``rate`` times a second on average, ``burst`` at once.

    ``rate`` 0 means unlimited. With the default ``burst`` of 1 the grants are
    evenly spaced, ``1 / rate`` seconds apart, so no one-second window ever
    holds more than ``rate`` of them (rounded up).
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate < 0 or burst < 1:
            raise ValueError(f"need rate >= 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a token and take it; False (and no token taken) if ``should_stop`` turns true first."""
        if self.rate == 0:
            return not should_stop()
        while not should_stop():
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1)
                    return True
                wait = (1 - self._tokens) / self.rate
            self._sleep(min(wait, _MAX_NAP))
        return False
