"""Per-key submission rate limits (``RATE_LIMIT_PER_MINUTE``): a token bucket per API key, in this process.

Each key (its non-secret id; without keys, the single local user) may submit ``rate`` transcriptions per minute,
in bursts of up to one minute's worth; past that, a 429 whose ``Retry-After`` says when the next one is allowed.
The buckets live in the server process: with N API servers behind a load balancer a key gets up to N times the
rate. That is the trade for a check that costs no database round trip; the queue limits (``MAX_QUEUE_SIZE``,
``MAX_QUEUE_AUDIO_SECS``) and the fair queue hold across the cluster.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Buckets idle this long are full again, and forgotten (so unknown keys cannot grow the table for ever).
_FORGET_AFTER_SECONDS = 120.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``take(key)`` → 0 when allowed (a token spent), else the seconds until one is available."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._burst = max(per_minute, 1.0)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def take(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            self._sweep(now)
            bucket = self._buckets.setdefault(key, _Bucket(self._burst, now))
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self._rate

    def retry_after(self, wait: float) -> str:
        """``Retry-After`` in whole seconds (at least 1)."""
        return str(max(1, math.ceil(wait)))

    def _sweep(self, now: float) -> None:
        if now - self._swept < _FORGET_AFTER_SECONDS:
            return
        self._swept = now
        refill = max(_FORGET_AFTER_SECONDS, 1 / self._rate)
        idle = [key for key, bucket in self._buckets.items() if now - bucket.updated > refill]
        for key in idle:
            del self._buckets[key]
