"""How many uploads may be decoded at once: a budget of memory, not a thread pool's default.

Every submission decodes its upload to check it (audio/decode.py ``inspect_audio``). Left to the thread
pool, 40 ran at once (anyio's default), each holding the whole decoded recording: 8 FLAC bombs of 363 KB got
the server OOM-killed. Decoding now streams, so each decode holds a bounded working set (FFmpeg's buffers and
one frame: 6 MB measured for 4 hours of FLAC, reserved as DECODE_SLOT_MB), and this budget caps how many run
at once: DECODE_MEMORY_MB // DECODE_SLOT_MB. A decode that finds the budget spent waits up to
DECODE_WAIT_SECS, then is refused with :class:`DecodeBusy` (the API answers 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

# The most one streaming decode holds: measured 6 MB of peak RSS growth for 4 h of FLAC (bench/), doubled for
# codecs with larger frames and FFmpeg's probe buffers.
DECODE_SLOT_MB = 16


class DecodeBusy(Exception):
    """Every decode slot stayed taken for the whole wait: the caller should retry after `retry_after` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"all decode slots busy; retry after {retry_after} s")
        self.retry_after = retry_after


class DecodeBudget:
    """A bounded number of decodes in flight, the others waiting a little in arrival order."""

    def __init__(self, memory_mb: float, wait_secs: float) -> None:
        self.slots = max(1, int(memory_mb // DECODE_SLOT_MB))
        self.wait_secs = wait_secs
        self._semaphore = asyncio.Semaphore(self.slots)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one decode slot for the block; raise DecodeBusy if none frees up within the wait."""
        if self._semaphore.locked():
            try:
                await asyncio.wait_for(self._semaphore.acquire(), self.wait_secs)
            except TimeoutError:
                raise DecodeBusy(max(1, math.ceil(self.wait_secs))) from None
        else:  # a free slot is taken at once (wait_for with no time left would refuse even a free one)
            await self._semaphore.acquire()
        try:
            yield
        finally:
            self._semaphore.release()
