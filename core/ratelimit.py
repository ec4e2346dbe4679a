"""A token bucket (pure: the caller passes the time), for limits kept in one process's memory.

Limits that must hold across processes live in Redis (chat sending, guest identities, orders);
this one is for what one connection does on the process that holds it (frames on a socket).
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` banked; starts full."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many (after refilling up to ``now``)."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < n:
            return False
        self._tokens -= n
        return True
