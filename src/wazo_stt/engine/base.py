"""The interfaces of the engine layer.

``Engine`` is what the worker calls: audio in, ``Transcript`` out. Model families only implement the smaller
``ChunkRecognizer`` (one chunk in, timed words out); the shared ``ChunkedEngine`` does the rest (VAD, chunking,
seams, segments), so every model receives exactly the same audio chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from wazo_stt.domain import Transcript
from wazo_stt.engine.words import RecognizedWord


class ModelLoadError(RuntimeError):
    """The model files are missing or unusable; the message says where they were looked for and how to fix it."""


class Engine(Protocol):
    model_id: str
    owned_by: str
    # ISO-639-1 codes the model transcribes.
    languages: frozenset[str]

    def transcribe(
        self, audio: np.ndarray, language: str | None, progress: Callable[[float, str], None] | None = None
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 audio. Blocking and CPU-bound: call it from a worker thread.

        ``progress`` is called (from that thread) after each chunk with the fraction of the speech recognised
        so far and the text recognised so far (which only grows by appending).
        """
        ...


class ChunkRecognizer(Protocol):
    """One model family. It may also set ``join_gap_seconds`` and ``max_chunk_seconds`` (see
    ``loader.chunk_planner``): how long a pause the planner may keep inside a chunk to give the model more
    context per call, and the longest chunk the model is best at."""

    model_id: str
    owned_by: str
    languages: frozenset[str]

    def recognize(self, chunk: np.ndarray, language: str | None) -> list[RecognizedWord]:
        """Words of one chunk (16 kHz mono float32, at most a few tens of seconds), timed from its start."""
        ...

    def language_label(self, language: str | None) -> str:
        """What ``verbose_json`` reports as the language of a transcript."""
        ...
