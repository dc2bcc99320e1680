"""Whole pipeline against onnx-asr's own: ours (VAD, planner, recogniser) against ``with_vad()`` with its defaults.

Issue 18's goal: "300 s and 1800 s recordings: >= 1.3x onnx-asr's own VAD pipeline (``with_vad(...)`` with its
defaults, as the upstream server uses it) on the same onnxruntime — our pipeline's lead, not the pin's". Both
run in this process on the same model files, the same ONNX Runtime and the same session options (ours: a thread
per core, no spinning), on the same decoded samples, so only the pipelines differ: how much audio reaches the
encoder, in which chunks and batches, and ours running a recording's next chunk beside the current one
(``CHUNKS_AT_ONCE``; shown apart: the same engine one chunk at a time). Variants are interleaved (A B C,
C B A, ...); the 30-minute recording gets ``PIPELINE_LONG_ROUNDS`` rounds (default 1: about 10 minutes a round on
2 vCPUs), the 5-minute one 3.
"""

from __future__ import annotations

import os
from typing import Any

import onnx_asr

from bench.audio import SpeechBank
from bench.common import Context, Goal, Result, Table, interleaved, log, onnx_asr_parakeet
from wazo_stt.audio import decode_audio
from wazo_stt.config import Settings
from wazo_stt.engine.chunking import Chunk
from wazo_stt.engine.loader import load_engines
from wazo_stt.engine.pipeline import ChunkedEngine
from wazo_stt.engine.vad import packaged_silero_dir

SR = 16_000
GOAL_RATIO = 1.3
LENGTHS = (300, 1800)


def run(ctx: Context, result: Result) -> None:
    rounds = {300: 2 if ctx.quick else 3, 1800: int(os.environ.get("PIPELINE_LONG_ROUNDS", "1"))}
    lengths = (300,) if ctx.quick else LENGTHS
    bank = SpeechBank(ctx.cache)
    model = onnx_asr_parakeet(ctx.model)
    upstream = model.with_vad(onnx_asr.load_vad("silero", packaged_silero_dir()))
    # The server's engine (load_engines with the defaults: CHUNKS_AT_ONCE=auto), and the same one chunk at a time.
    engine = load_engines(Settings(_env_file=None, model_path=ctx.model, embedded_fallback=False)).resolve(None)
    planner = engine.planner
    one_by_one = ChunkedEngine(engine.recognizer, planner)
    rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    for seconds in lengths:
        recording = decode_audio(bank.recording(f"scaling-{seconds}s", seconds, "wav", seed=77).path).samples
        chunks: list[Chunk] = planner.plan(recording)
        segments = list(upstream.recognize(recording, sample_rate=SR))  # also the warm-up
        sent_ours = sum(c.samples for c in chunks) / SR
        sent_upstream = sum(s.end - s.start for s in segments)
        log(f"pipeline: {seconds} s, ours {len(chunks)} chunks ({sent_ours:.0f} s), onnx-asr {len(segments)} segments")
        measured = interleaved(
            {
                "onnx-asr with_vad() defaults": lambda r=recording: (
                    list(upstream.recognize(r, sample_rate=SR)) and None
                ),
                "ours (ChunkedEngine as the server runs it)": lambda r=recording: engine.transcribe(r, None) and None,
                "ours, one chunk at a time (CHUNKS_AT_ONCE=1)": lambda r=recording: (
                    one_by_one.transcribe(r, None) and None
                ),
            },
            rounds[seconds],
        )
        base = measured["onnx-asr with_vad() defaults"]["median"]
        for name, m in measured.items():
            ours = name.startswith("ours")
            rows.append(
                [
                    f"{seconds // 60} min",
                    name,
                    f"{len(chunks) if ours else len(segments)} ({sent_ours if ours else sent_upstream:.1f} s)",
                    round(m["median"], 1),
                    round(seconds / m["median"], 1),
                    round(base / m["median"], 2),
                    ", ".join(map(str, m["rounds"])),
                    m["load"],
                ]
            )
        ratio = base / measured["ours (ChunkedEngine as the server runs it)"]["median"]
        result.goals.append(
            Goal(
                f"{seconds // 60}-minute recording vs onnx-asr with_vad()",
                f">= {GOAL_RATIO}x",
                f"{ratio:.2f}x",
                ratio >= GOAL_RATIO,
            )
        )
        data[str(seconds)] = measured
    result.tables.append(
        Table(
            "Whole pipeline (VAD + recognition), same model, same ONNX Runtime, one process",
            [
                "audio",
                "pipeline",
                "chunks (sent to the encoder)",
                "median s",
                "x real time",
                "speed vs onnx-asr",
                "rounds s",
                "max load",
            ],
            rows,
        )
    )
    result.description = __doc__.split("\n\n", 1)[1].strip()
    result.settings = {"rounds": rounds, "lengths": list(lengths)}
    result.data = data
