"""How many jobs one process transcribes at once: ``WORKERS`` (``auto`` by default), and a memory gate.

One Parakeet inference keeps about 1.6 of 2 cores busy (ONNX Runtime waits between operators), so a second job
running alongside fills the gap: on a burst of 30 voicemails the server drained 1.5x the audio per second of
plain onnx-asr with two jobs at once, against 1.1x with one (docs/benchmarks.md, "burst"). A lone job still gets
every core to itself, so a single voicemail is answered as fast as before. ``auto`` therefore means two jobs at
once wherever there are two cores or more, one on a single core. Larger machines were not measured: ONNX
Runtime's threads are shared by the jobs of one process, so more jobs than two gain less there than more
processes (docs/scaling.md).

Whatever ``WORKERS`` says, a job starts alongside a running one only while the machine (or container) has
``JOB_MEMORY_MB`` available: a burst on a small box then runs one job at a time instead of being OOM-killed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from wazo_stt import host

log = logging.getLogger(__name__)


class MemoryGate:
    """Says whether one more job may start alongside those running: only while enough memory is available.

    The first job of a process is never held back (a lone job is what the server is for); the gate only
    decides whether a second one joins it.
    """

    def __init__(self, job_memory_mb: float, available_mb: Callable[[], float | None] = host.available_memory_mb):
        self.job_memory_mb = job_memory_mb
        self._available_mb = available_mb
        self._holding = False

    def allows_another(self) -> bool:
        if self.job_memory_mb <= 0:
            return True
        available = self._available_mb()
        allowed = host.room_for(self.job_memory_mb, available)
        if allowed == self._holding:  # log the changes, not every poll
            self._holding = not allowed
            if self._holding:
                log.warning(
                    "Only %.0f MB of memory available (JOB_MEMORY_MB=%g): no second job starts until more is free",
                    available,
                    self.job_memory_mb,
                )
            else:
                log.info("Memory available again: jobs run side by side")
        return allowed
