"""The interface every speech engine implements, so the worker never knows which model family it drives."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from wazo_stt.domain import Transcript


class ModelLoadError(RuntimeError):
    """The model files are missing or unusable; the message says where they were looked for and how to fix it."""


class Engine(Protocol):
    model_id: str
    owned_by: str
    # ISO-639-1 codes the model transcribes.
    languages: frozenset[str]

    def transcribe(self, audio: np.ndarray, language: str | None) -> Transcript:
        """Transcribe 16 kHz mono float32 audio. Blocking and CPU-bound: call it from a worker thread."""
        ...
