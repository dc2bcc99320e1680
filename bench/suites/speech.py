"""Speech sent: how many seconds of each kind of file reach the encoder, ours against onnx-asr's own VAD pipeline.

The encoder is ~97% of Parakeet's time, so every second not sent is saved; this table is deterministic (it does
not depend on the machine's load): Silero VAD and the chunk planner only, no model. Three pipelines on the same
decoded audio:

* **onnx-asr ``with_vad()``** with its defaults (what the upstream Python server runs): Silero spans padded by
  30 ms, split at 100 ms pauses, at most 20 s, each sent alone (batched 8 at a time);
* **ours before issue 18**: spans padded by 200 ms, joined across pauses of up to 1 s *with the pause* inside
  the chunk (up to 20 s);
* **ours now**: the same spans joined back to back, the pauses between them left out (``KEPT_PAUSE_SECONDS``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx_asr

from bench.audio import SpeechBank, voicemail_durations, voicemail_mix
from bench.common import Context, Goal, Result, Table, log
from wazo_stt.audio import decode_audio
from wazo_stt.engine.chunking import Chunk, speech_chunks
from wazo_stt.engine.parakeet import ParakeetRecognizer
from wazo_stt.engine.pipeline import KEPT_PAUSE_SECONDS, SAMPLE_RATE
from wazo_stt.engine.vad import SpeechDetector, packaged_silero_dir

PARAKEET_JOIN_GAP = 1.0  # ChunkPlanner's default, which Parakeet uses
OVERLAP = 2.0
BEFORE_PAD_MS = 200.0  # SpeechDetector's padding before issue 18


def _chunk_stats(chunks: list[Chunk]) -> dict[str, Any]:
    lengths = [c.samples / SAMPLE_RATE for c in chunks]
    return {"sent": sum(lengths), "chunks": len(lengths), "longest": max(lengths, default=0.0)}


def run(ctx: Context, result: Result) -> None:
    bank = SpeechBank(ctx.cache)
    voicemails = voicemail_mix(bank, voicemail_durations(50, seed=5), "burst")  # the throughput burst
    kinds: dict[str, list[Any]] = {}
    for rec in voicemails:
        kinds.setdefault(f"voicemail ({rec.fmt})", []).append(rec)
    for seconds in (300, 1800) if not ctx.quick else (300,):
        kinds[f"call recording {seconds // 60} min"] = [bank.recording(f"scaling-{seconds}s", seconds, "wav", 77)]
    result.description = (
        "Seconds of audio sent to the encoder, per kind of file, by three pipelines over the same decoded audio "
        "(Silero VAD and chunk planning only: deterministic, independent of the machine's load). "
        "onnx-asr = its `with_vad()` defaults (30 ms padding, 100 ms minimum pause, segments of at most 20 s, "
        "each sent alone); before = ours before issue 18 (200 ms padding, neighbours joined across pauses of up to "
        "1 s with the pause kept); now = the same spans sent back to back, pauses between them left out. The "
        "voicemails are the throughput burst (50 files, 5-120 s)."
    )
    upstream = onnx_asr.load_vad("silero", packaged_silero_dir())
    detector = SpeechDetector()
    detector_before = SpeechDetector(pad_ms=BEFORE_PAD_MS)
    bound = ParakeetRecognizer.max_chunk_seconds
    rows: list[dict[str, Any]] = []
    for kind, recordings in kinds.items():
        log(f"speech: {kind} ({len(recordings)} files)")
        totals: dict[str, dict[str, float]] = {}
        audio_seconds = speech_seconds = 0.0
        for rec in recordings:
            samples = decode_audio(rec.path.read_bytes()).samples
            audio_seconds += len(samples) / SAMPLE_RATE
            speech_seconds += rec.speech_seconds
            (segments,) = upstream.segment_batch(samples[None, :], np.array([len(samples)]), SAMPLE_RATE)
            up = [Chunk(int(s), int(e)) for s, e in segments]
            spans = detector.speech_spans(samples)
            spans_before = detector_before.speech_spans(samples)
            runs = {
                "onnx-asr": _chunk_stats(up),
                "before": _chunk_stats(speech_chunks(spans_before, SAMPLE_RATE, bound, OVERLAP, PARAKEET_JOIN_GAP)),
                "now": _chunk_stats(
                    speech_chunks(spans, SAMPLE_RATE, bound, OVERLAP, PARAKEET_JOIN_GAP, KEPT_PAUSE_SECONDS)
                ),
            }
            for name, stats in runs.items():
                total = totals.setdefault(name, {"sent": 0.0, "chunks": 0, "longest": 0.0})
                total["sent"] += stats["sent"]
                total["chunks"] += stats["chunks"]
                total["longest"] = max(total["longest"], stats["longest"])
        rows.append(
            {"kind": kind, "files": len(recordings), "audio": audio_seconds, "speech": speech_seconds}
            | {name: total for name, total in totals.items()}
        )

    def ratio(row: dict[str, Any], name: str) -> float:
        return row[name]["sent"] / row["audio"]

    result.tables.append(
        Table(
            "Speech sent to the encoder / audio seconds",
            [
                *("file", "files", "audio s", "spoken s"),
                *("onnx-asr sent s", "onnx-asr chunks", "before sent s", "before chunks", "now sent s", "now chunks"),
                *("sent / audio: onnx-asr", "before", "now", "now / before"),
            ],
            [
                [
                    *(r["kind"], r["files"], round(r["audio"], 1), round(r["speech"], 1)),
                    *(round(r["onnx-asr"]["sent"], 1), r["onnx-asr"]["chunks"]),
                    *(round(r["before"]["sent"], 1), r["before"]["chunks"]),
                    *(round(r["now"]["sent"], 1), r["now"]["chunks"]),
                    *(round(ratio(r, "onnx-asr"), 3), round(ratio(r, "before"), 3), round(ratio(r, "now"), 3)),
                    round(r["now"]["sent"] / r["before"]["sent"], 3),
                ]
                for r in rows
            ],
            note="Longest chunk sent, every file: "
            + ", ".join(f"{n} {max(r[n]['longest'] for r in rows):.1f} s" for n in ("onnx-asr", "before", "now"))
            + f" "
            f"(bound {bound:g} s). Spoken = seconds of espeak-ng utterances placed in the file, before any padding.",
        )
    )
    worst = max(rows, key=lambda r: r["now"]["sent"] / r["before"]["sent"])
    closest = max(rows, key=lambda r: r["now"]["sent"] / r["onnx-asr"]["sent"])
    result.goals.append(
        Goal(
            "audio sent to the encoder, now vs before issue 18, every kind of file",
            "<= 0.95 x",
            f"worst {worst['now']['sent'] / worst['before']['sent']:.3f} x ({worst['kind']}); against onnx-asr's "
            f"with_vad() at most {closest['now']['sent'] / closest['onnx-asr']['sent']:.3f} x ({closest['kind']})",
            worst["now"]["sent"] <= 0.95 * worst["before"]["sent"],
        )
    )
    result.settings = {
        "kept_pause_s": None if math.isinf(KEPT_PAUSE_SECONDS) else KEPT_PAUSE_SECONDS,
        "join_gap_s": PARAKEET_JOIN_GAP,
        "bound_s": bound,
    }
    result.data = {"rows": rows}
