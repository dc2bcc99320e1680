"""Parakeet's int8 depthwise convolutions as exact float convolutions (``FLOAT_CONVS``, engine/float_convs.py).

Our engine as the server runs it (``bench.case`` runner ``chunked``: decoding, VAD, chunks, recognition), in a
fresh process per case, with the encoder as downloaded (``FLOAT_CONVS=false``) and with its copy whose
one-channel-per-group convolutions run in float, interleaved round by round (on, off, off, on, ...). Inputs: the
burst's 30 voicemails one after another, and the 5-minute recording. Then both encoders are fed the same mel
features of several lengths, and their outputs compared bit for bit; each case's transcripts are compared by
digest.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.audio import SpeechBank, voicemail_durations, voicemail_mix
from bench.common import Context, Goal, Result, Table, log, run_json_subprocess
from wazo_stt.engine.prepared import PREPARED_DIR
from wazo_stt.engine.runtime import session_options
from wazo_stt.models.catalog import model_files

ROUNDS = 3
FLOAT, BASELINE = "float convolutions (default)", "as downloaded (FLOAT_CONVS=false)"
VARIANTS = {FLOAT: True, BASELINE: False}
ENCODER = model_files("int8")[0]
CHECKED_SECONDS = (3.1, 11.7, 20.0)


def run(ctx: Context, result: Result) -> None:
    bank = SpeechBank(ctx.cache)
    inputs = {
        "30 voicemails": [str(f.path) for f in voicemail_mix(bank, voicemail_durations(30, seed=5), "burst")],
        "5-minute recording": [str(bank.recording("scaling-300s", 300, "wav", seed=77).path)],
    }
    rounds = 2 if ctx.quick else ROUNDS
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(i, v): [] for i in inputs for v in VARIANTS}
    for r in range(rounds):
        for name, files in inputs.items():
            for variant in list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS)):
                spec = {"runner": "chunked", "model": str(ctx.model), "files": files, "float_convs": VARIANTS[variant]}
                measured = run_json_subprocess([ctx.python, "-m", "bench.case", json.dumps(spec)], timeout=1800)
                log(f"float_convs round {r + 1}: {name}, {variant}: {measured['x_realtime']}x real time")
                runs[(name, variant)].append(measured)

    rows, speedups = [], {}
    for name in inputs:
        base = statistics.median(m["x_realtime"] for m in runs[(name, BASELINE)])
        digests = {v: [[i["text_sha1"] for i in m["items"]] for m in runs[(name, v)]] for v in VARIANTS}
        same = all(d == digests[BASELINE][0] for v in VARIANTS for d in digests[v])
        speedups[name] = statistics.median(m["x_realtime"] for m in runs[(name, FLOAT)]) / base
        for variant in VARIANTS:
            measured = runs[(name, variant)]
            speed = statistics.median(m["x_realtime"] for m in measured)
            rows.append(
                [
                    name,
                    variant,
                    round(speed, 1),
                    round(speed / base, 2),
                    round(statistics.median(m["cpu_seconds"] for m in measured), 1),
                    max(round(m["peak_rss"] / 2**20) for m in measured),
                    round(statistics.median(m["load_seconds"] for m in measured), 1),
                    "yes" if same else "NO",
                    ", ".join(str(m["x_realtime"]) for m in measured),
                ]
            )
    result.tables.append(
        Table(
            "Our engine with the encoder's depthwise convolutions in float, and as downloaded (median of the rounds)",
            [
                "input",
                "encoder",
                "x real time",
                "vs as downloaded",
                "CPU s",
                "peak RSS MB",
                "load s",
                "same transcripts",
                "rounds (x real time)",
            ],
            rows,
        )
    )
    identical = _encoders_agree(ctx)
    result.tables.append(
        Table(
            "Both encoders on the same mel features (random, as int8 speed does not depend on values)",
            ["chunk s", "outputs identical bit for bit"],
            [[s, "yes" if same else "NO"] for s, same in identical.items()],
        )
    )
    result.goals.append(
        Goal(
            "float convolutions change no output",
            "identical encoder outputs and transcripts",
            f"encoder outputs identical at {', '.join(f'{s:g} s' for s in identical)}: {all(identical.values())}; "
            f"transcripts: {all(row[7] == 'yes' for row in rows)}",
            all(identical.values()) and all(row[7] == "yes" for row in rows),
        )
    )
    result.description = __doc__.split("\n\n", 1)[1].strip()
    result.settings = {"rounds": rounds, "inputs": inputs}
    result.data = {"runs": {f"{i} / {v}": m for (i, v), m in runs.items()}, "speedups": speedups}


def _encoders_agree(ctx: Context) -> dict[float, bool]:
    downloaded, rewritten = (
        ort.InferenceSession(str(path), session_options(0), providers=["CPUExecutionProvider"])
        for path in (ctx.model / ENCODER, ctx.model / PREPARED_DIR / ENCODER)
    )
    rng = np.random.default_rng(18)
    agree = {}
    for seconds in CHECKED_SECONDS:
        frames = int(seconds * 100) + 1
        feed = {
            "audio_signal": rng.standard_normal((1, 128, frames), dtype=np.float32),
            "length": np.array([frames], dtype=np.int64),
        }
        agree[seconds] = all(
            np.array_equal(a, b) for a, b in zip(downloaded.run(None, feed), rewritten.run(None, feed), strict=True)
        )
    return agree
