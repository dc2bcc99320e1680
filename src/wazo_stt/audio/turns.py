"""Decoders in the process take turns, in slices of a few milliseconds, instead of running side by side.

PyAV lets go of the GIL around every FFmpeg call: for a voicemail, a few calls per 20-60 ms frame. Two threads
decoding at once hand the GIL back and forth at each of those calls and mostly wait for it: on 2 vCPUs, the 30
voicemails of the burst benchmark were checked in 0.4-0.7 s by one thread, but in 1.2-1.4 s by two and 2.8 s
by thirty (2-4x the CPU), against 0.4 s by two *processes* (docs/benchmarks.md, issue 18, "Fourth pass"). Upload
checks (DECODE_MEMORY_MB allows four) and the workers' decodes run in threads of one process, so they now
take turns: one thread decodes a slice (SLICE_SECONDS of work, a second or more of audio) under a lock while
the others wait on the lock without touching the GIL. A long file still shares: a voicemail's check waits for
at most one slice of a 4-hour upload, not for all of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

# Long enough that the lock changes hands a few hundred times a second at most (each hand-over costs a wake-up),
# short enough that a decode waiting its turn is not noticed next to an HTTP round trip.
SLICE_SECONDS = 0.005

_turn = threading.Lock()


def in_turns(items: Iterator[T]) -> Iterator[T]:
    """``items``, produced one slice at a time under the process's decoding lock.

    Each slice is drawn into a list while the lock is held and handed out after it is released, so the caller's
    own work (and an abandoned iteration) never holds the lock.
    """
    while True:
        batch: list[T] = []
        with _turn:
            deadline = time.perf_counter() + SLICE_SECONDS
            for item in items:
                batch.append(item)
                if time.perf_counter() >= deadline:
                    break
        if not batch:
            return
        yield from batch
