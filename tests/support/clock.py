"""A clock the tests move by hand, for the store's timestamps and retention (no sleeping, no real time)."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1_770_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
