"""Scaling with length: speed and peak memory from 30 s to 60 min, chunked (our engine) vs one encoder pass.

Parakeet's attention grows with the square of the input and one encoder call stops at 400 s, so the engine
cuts audio into chunks of at most ``CHUNK_MAX_SECS`` in the pauses Silero VAD finds. This benchmark shows what
that buys: every case runs in a fresh process, so its peak RSS is its own. The same 5-minute file also runs
with VAD off (fixed chunks with overlap) and with other chunk bounds, to justify ``ENABLE_VAD=true`` and
``CHUNK_MAX_SECS=30``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.audio import SpeechBank
from bench.common import Context, Goal, Result, Table, log, mb, run_json_subprocess

FULL_LENGTHS = [30, 300, 1200, 3600]
QUICK_LENGTHS = [30, 300, 1200]
ONE_PASS_LIMIT = 400
CHUNK_BOUNDS = [15, 20, 30]
DEFAULT_BOUND = 20  # ParakeetRecognizer.max_chunk_seconds (kept literal: the table says what was measured)
GOAL_SPEED_RATIO = 0.9
GOAL_PEAK_BYTES = 1.5e9


def _case(ctx: Context, path: Path, runner: str, **options: Any) -> dict[str, Any]:
    spec = {"runner": runner, "model": str(ctx.model), "files": [str(path)], **options}
    out = run_json_subprocess([ctx.python, "-m", "bench.case", json.dumps(spec)], timeout=3600)
    (item,) = out["items"]
    return {
        "runner": runner,
        **options,
        "audio_seconds": item["audio_seconds"],
        "sent_seconds": item["sent_seconds"],
        "chunks": item["chunks"],
        "wall": item["wall"],
        "x_realtime": item["audio_seconds"] / item["wall"],
        "cpu_seconds": out["cpu_seconds"],
        "rss_loaded": out["rss_loaded"],
        "peak_rss": out["peak_rss"],
        "load_seconds": out["load_seconds"],
    }


def _label(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:g} min"


def run(ctx: Context, result: Result) -> None:
    lengths = QUICK_LENGTHS if ctx.quick else FULL_LENGTHS
    result.description = (
        "Call-recording-like audio (8 kHz WAV, speech with pauses; about 75% speech) of each length, transcribed "
        "in a fresh process per case: chunked = our engine with defaults (Silero VAD, chunks of at most 20 s); "
        "one pass = the same recogniser on the whole file in one encoder call (possible up to 400 s). x real time "
        "= audio seconds / wall seconds (decoding, VAD, recognition); peak RSS = the process's maximum resident "
        "memory, model included."
    )
    bank = SpeechBank(ctx.cache)
    recordings = {n: bank.recording(f"scaling-{n}s", n, "wav", seed=77) for n in lengths}
    cases: list[dict[str, Any]] = []
    for n, rec in recordings.items():
        log(f"scaling: {_label(n)} chunked")
        cases.append({"length": n, "mode": "chunked", **_case(ctx, rec.path, "chunked")})
        if n <= ONE_PASS_LIMIT:
            log(f"scaling: {_label(n)} one pass")
            cases.append({"length": n, "mode": "one pass", **_case(ctx, rec.path, "onepass")})

    rows = [
        [
            _label(c["length"]),
            c["mode"],
            c["chunks"],
            round(c["sent_seconds"], 1),
            round(c["wall"], 1),
            round(c["x_realtime"], 2),
            round(mb(c["rss_loaded"])),
            round(mb(c["peak_rss"])),
        ]
        for c in cases
    ]
    result.tables.append(
        Table(
            "x real time and peak RSS vs audio length",
            ["audio", "mode", "chunks", "sent to model s", "wall s", "x real time", "RSS after load MB", "peak RSS MB"],
            rows,
        )
    )

    # Defaults: VAD on/off and the chunk bound, on the 20-minute file (5 minutes in quick mode): long enough
    # for ONNX Runtime's arena to have met every chunk length.
    bounds_length = 300 if ctx.quick else 1200
    variants: list[dict[str, Any]] = []
    for vad in (True, False):
        for bound in CHUNK_BOUNDS:
            if vad and bound == DEFAULT_BOUND:
                base = next(c for c in cases if c["length"] == bounds_length and c["mode"] == "chunked")
                variants.append({**base, "vad": True, "chunk_max_secs": bound})
                continue
            if not vad and bound != DEFAULT_BOUND and ctx.quick:
                continue
            log(f"scaling: {_label(bounds_length)}, VAD {'on' if vad else 'off'}, chunks <= {bound} s")
            variants.append(_case(ctx, recordings[bounds_length].path, "chunked", vad=vad, chunk_max_secs=bound))
    result.tables.append(
        Table(
            f"Defaults on the {_label(bounds_length)} file: VAD and chunk bound",
            ["VAD", "chunks <= s", "chunks", "sent to model s", "wall s", "x real time", "peak RSS MB"],
            [
                [
                    "on" if v.get("vad", True) else "off (fixed chunks, 2 s overlap)",
                    v.get("chunk_max_secs", DEFAULT_BOUND),
                    v["chunks"],
                    round(v["sent_seconds"], 1),
                    round(v["wall"], 1),
                    round(v["x_realtime"], 2),
                    round(mb(v["peak_rss"])),
                ]
                for v in variants
            ],
        )
    )

    chunked = [c for c in cases if c["mode"] == "chunked"]
    first, last = chunked[0], chunked[-1]
    ratio = last["x_realtime"] / first["x_realtime"]
    peak = max(c["peak_rss"] for c in chunked)
    worst = max(chunked, key=lambda c: c["peak_rss"])
    result.goals += [
        Goal(
            f"x real time at {_label(last['length'])} vs at {_label(first['length'])} (chunked)",
            f">= {GOAL_SPEED_RATIO} x",
            f"{last['x_realtime']:.2f} / {first['x_realtime']:.2f} = {ratio:.2f} x",
            ratio >= GOAL_SPEED_RATIO,
        ),
        Goal(
            "peak RSS at every length (chunked)",
            f"<= {GOAL_PEAK_BYTES / 1e9:g} GB",
            f"max {mb(peak):.0f} MB (at {_label(worst['length'])})",
            peak <= GOAL_PEAK_BYTES,
        ),
    ]
    result.settings = {"lengths": lengths, "chunk_bounds": CHUNK_BOUNDS, "one_pass_limit_s": ONE_PASS_LIMIT}
    result.data = {
        "cases": cases,
        "variants": variants,
        "recordings": {n: r.speech_seconds for n, r in recordings.items()},
    }
    if ctx.plots is not None:
        from bench.plots import scaling_plot

        path = scaling_plot(cases, ctx.plots / "scaling.png", GOAL_PEAK_BYTES)
        result.data["plot"] = str(path)
