"""Two chunks of one recording at once, when the process has a spare inference.

One Parakeet inference keeps about 1.6 of 2 cores busy: ONNX Runtime waits between operators. Two jobs side by
side fill the gap (``WORKERS=auto``), but a lone long recording, or the last voicemail of a burst, ran one chunk
at a time and left it idle. Its next chunk now starts beside the current one whenever fewer inferences are
running in the process than ``CHUNKS_AT_ONCE``: a 5-minute recording is transcribed 1.2-1.3x faster on 2 vCPUs
(in-process and through the server; docs/benchmarks.md, "pipeline"). Results still come back in chunk order,
so words, progress and partial text are what one chunk at a time gives.

A job's *own* chunk never waits for a slot: only the look-ahead does. When a second job starts, it runs at once
(briefly three inferences, for the rest of the first job's look-ahead chunk), and the first job stops looking
ahead while the two share the slots, so neither waits on the other.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class InferenceSlots:
    """Counts the inferences running in the process; grants a look-ahead only while fewer than ``capacity`` run
    and ``memory_ok()`` says the machine has room for one more (the same test as a second job's, JOB_MEMORY_MB)."""

    def __init__(self, capacity: int, memory_ok: Callable[[], bool] | None = None) -> None:
        self.capacity = capacity
        self._memory_ok = memory_ok
        self._running = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        return self._running

    def take(self, *, look_ahead: bool) -> bool:
        """Count one more inference: always for a job's own chunk, for a look-ahead only when a slot is free."""
        if look_ahead and self._memory_ok is not None and not self._memory_ok():
            return False
        with self._lock:
            if look_ahead and self._running >= self.capacity:
                return False
            self._running += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._running -= 1


def in_order(work: Callable[[T], R], items: Iterable[T], slots: InferenceSlots | None) -> Iterator[R]:
    """``work(item)`` for each item, results in order; the next item starts early while ``slots`` has room.

    Without slots (or with one), items run one after the other on the caller's thread, as before. With them,
    each item runs on one of two helper threads (created by the caller, so Linux gives them its niceness), at
    most two items of this call at once. Leaving the loop early (an exception, a dropped job) waits for the item
    still running, at most one chunk.
    """
    if slots is None or slots.capacity < 2:
        yield from map(work, items)
        return

    def counted(item: T) -> R:
        try:
            return work(item)
        finally:
            slots.give_back()

    pending = iter(items)
    exhausted = False
    running: deque[Future[R]] = deque()
    with ThreadPoolExecutor(2, thread_name_prefix="wazo-stt-chunk") as pool:
        try:
            while True:
                # The job's own next item always starts; one more only while the process has a free slot.
                while not exhausted and len(running) < 2 and slots.take(look_ahead=bool(running)):
                    try:
                        item = next(pending)
                    except StopIteration:
                        slots.give_back()
                        exhausted = True
                    else:
                        running.append(pool.submit(counted, item))
                if not running:
                    return
                yield running.popleft().result()
        finally:
            for future in running:
                if future.cancel():  # never started: its slot is still counted
                    slots.give_back()
