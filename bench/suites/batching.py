"""Batching and chunk length: what one encoder call should hold, measured on the model (timing: noisy machine).

onnx-asr recognises a list of arrays as one batch (padded to the longest). Variants, interleaved round by round
(A B C A B C ...) in one process so the machine's load hits them alike, median of the rounds:

* **chunks of one job**: the 5-minute recording's chunks (our planner) one call each, against batches of 2, 4
  and 8 chunks, in order and sorted by length (less padding);
* **chunks of several queued jobs**: the first chunk of 8 voicemails, one call each, against one batch of 8;
* **chunk length**: the same 120 s of speech cut in fixed chunks of 5, 10, 20 and 30 s, one call each:
  encoder cost per audio second against the context each call gets.

The whole pipeline against onnx-asr's ``with_vad()`` is the ``pipeline`` suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.audio import SpeechBank, voicemail_durations, voicemail_mix
from bench.common import Context, Result, Table, interleaved, log, onnx_asr_parakeet
from wazo_stt.audio import decode_audio
from wazo_stt.engine.pipeline import ChunkPlanner
from wazo_stt.engine.vad import SpeechDetector

SR = 16_000


def _batches(chunks: list[np.ndarray], size: int, by_length: bool) -> list[list[np.ndarray]]:
    ordered = sorted(chunks, key=len) if by_length else chunks
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def run(ctx: Context, result: Result) -> None:
    rounds = 2 if ctx.quick else 3
    bank = SpeechBank(ctx.cache)
    model = onnx_asr_parakeet(ctx.model)
    planner = ChunkPlanner(SpeechDetector(), max_seconds=20.0)
    recording = decode_audio(bank.recording("scaling-300s", 300, "wav", seed=77).path.read_bytes()).samples
    chunks = [c.audio(recording) for c in planner.plan(recording)]
    voicemails = [
        decode_audio(r.path.read_bytes()).samples for r in voicemail_mix(bank, voicemail_durations(8, seed=9), "batch")
    ]
    firsts = [planner.plan(v)[0].audio(v) for v in voicemails]
    model.recognize(chunks[0], sample_rate=SR)  # warm-up

    def one_by_one(items: list[np.ndarray]) -> Callable[[], None]:
        return lambda: [model.recognize(x, sample_rate=SR) for x in items] and None

    def batched(items: list[np.ndarray], size: int, by_length: bool) -> Callable[[], None]:
        groups = _batches(items, size, by_length)
        return lambda: [model.recognize(g, sample_rate=SR) for g in groups] and None

    job_audio = sum(len(c) for c in chunks) / SR
    log(f"batching: one job, {len(chunks)} chunks, {job_audio:.0f} s")
    job = interleaved(
        {
            "one call per chunk": one_by_one(chunks),
            "batches of 2, sorted by length": batched(chunks, 2, True),
            "batches of 4, sorted by length": batched(chunks, 4, True),
            "batches of 8, sorted by length": batched(chunks, 8, True),
        },
        rounds,
    )
    jobs_audio = sum(len(c) for c in firsts) / SR
    log(f"batching: first chunks of {len(firsts)} voicemails, {jobs_audio:.0f} s")
    jobs = interleaved(
        {
            "one call per job": one_by_one(firsts),
            "one batch of 8 jobs": batched(firsts, 8, False),
        },
        rounds,
    )
    speech = np.concatenate(chunks)[: 120 * SR]
    lengths = (5, 10, 20, 30)
    log("batching: chunk length")
    by_length = interleaved(
        {f"{n} s": one_by_one([speech[i : i + n * SR] for i in range(0, len(speech), n * SR)]) for n in lengths},
        rounds,
    )

    def rows(measured: dict[str, dict[str, Any]], audio: float) -> list[list[Any]]:
        base = next(iter(measured.values()))["median"]
        return [
            [
                name,
                round(m["median"], 2),
                round(audio / m["median"], 1),
                round(base / m["median"], 3),
                ", ".join(map(str, m["rounds"])),
                m["load"],
            ]
            for name, m in measured.items()
        ]

    columns = ["variant", "median s", "x real time", "speed vs first", "rounds s", "max load"]
    result.tables += [
        Table(
            f"Chunks of one job ({len(chunks)} chunks, {job_audio:.0f} s, the 5-minute recording)",
            columns,
            rows(job, job_audio),
        ),
        Table(f"First chunk of {len(firsts)} queued voicemails ({jobs_audio:.0f} s)", columns, rows(jobs, jobs_audio)),
        Table("Chunk length (120 s of speech, one call per chunk)", columns, rows(by_length, 120.0)),
    ]
    result.description = __doc__.split("\n\n", 1)[1].strip()
    result.settings = {"rounds": rounds}
    result.data = {"job": job, "jobs": jobs, "chunk_length": by_length}
