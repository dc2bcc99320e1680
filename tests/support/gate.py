"""Hold the worker: the real engines, wrapped so a test decides when each transcription may go on."""

from __future__ import annotations

import threading

from wazo_stt.engine.loader import load_engines
from wazo_stt.engine.registry import EngineRegistry


class Gate:
    """Wraps the real engines so that each transcription waits for ``release``: before it starts, or, with
    ``after_first_chunk``, once the real pipeline has recognised its first chunk and reported its progress."""

    def __init__(self, *, after_first_chunk: bool = False) -> None:
        self.release = threading.Semaphore(0)
        self._after_first_chunk = after_first_chunk

    def loader(self, settings) -> EngineRegistry:
        registry = load_engines(settings)
        for engine in registry.engines:
            engine.transcribe = self._gated(engine.transcribe)
        return registry

    def _gated(self, real):
        def gated(audio, language, progress=None):
            if not self._after_first_chunk:
                self.release.acquire(timeout=30)
                return real(audio, language, progress)
            waited = False

            def report(done: float, text: str) -> None:
                nonlocal waited
                if progress is not None:
                    progress(done, text)
                if not waited:
                    waited = True
                    self.release.acquire(timeout=30)

            return real(audio, language, report)

        return gated
