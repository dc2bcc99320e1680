"""The real engines (tiny model), slowed down or made to crash the process, for tests of crashes and stops.

The production code has no test hooks: these wrap the loaded engines' ``transcribe`` from the outside, as
``tests/support/gate.py`` does, and are handed to ``create_app`` as its engine loader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wazo_stt.config import Settings
from wazo_stt.engine.loader import load_engines
from wazo_stt.engine.registry import EngineRegistry

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class SlowEngines:
    """Every transcription sleeps ``delay`` seconds first (so a job is reliably ``processing`` when the test
    acts), audio lasting ``crash_on_seconds`` kills the whole process as an out-of-memory kill would, and each
    transcription's start and end are appended to ``journal`` (to count how many times work was done)."""

    delay: float = 0.0
    crash_on_seconds: float | None = None
    journal: Path | None = None

    def loader(self, settings: Settings) -> EngineRegistry:
        registry = load_engines(settings)
        for engine in registry.engines:
            engine.transcribe = self._wrap(engine.transcribe)  # type: ignore[method-assign]
        return registry

    def _wrap(self, real):
        def transcribe(audio: np.ndarray, language: str | None, progress=None):
            seconds = audio.size / SAMPLE_RATE
            self._note(f"start {seconds:.2f}")
            if self.crash_on_seconds is not None and abs(seconds - self.crash_on_seconds) < 0.01:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(self.delay)
            transcript = real(audio, language, progress)
            self._note(f"end {seconds:.2f}")
            return transcript

        return transcribe

    def _note(self, line: str) -> None:
        if self.journal is None:
            return
        # A test that fills the disk must not make the journal fail the transcription it records.
        with contextlib.suppress(OSError), self.journal.open("a", encoding="utf-8") as journal:
            journal.write(f"{os.getpid()} {line}\n")
