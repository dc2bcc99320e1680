"""Hold the worker: the real engines, wrapped so a test decides when each transcription may start."""

from __future__ import annotations

import threading

from wazo_stt.engine.loader import load_engines
from wazo_stt.engine.registry import EngineRegistry


class Gate:
    """Wraps the real engines so a test decides when each transcription may start."""

    def __init__(self) -> None:
        self.release = threading.Semaphore(0)

    def loader(self, settings) -> EngineRegistry:
        registry = load_engines(settings)
        for engine in registry.engines:
            real = engine.transcribe

            def gated(audio, language, _real=real):
                self.release.acquire(timeout=30)
                return _real(audio, language)

            engine.transcribe = gated
        return registry
