"""ONNX Runtime releases against the pin: our engine on the 5-minute recording, one virtualenv per release.

Issue 18: "keep the onnxruntime pin honest: re-measure the newest releases each time the benchmark runs and move
the pin when a release is as fast". Each ``--runtime-python`` names the Python of a virtualenv holding wazo-stt
and one ONNX Runtime release (``python -m venv V && V/bin/pip install -e . && V/bin/pip install --no-deps
onnxruntime==X``: the pin would refuse it otherwise); this environment's release is the reference. Every case is
a fresh process (``bench.case`` runner ``chunked``: VAD, chunks, recognition, as the server runs them), the
releases interleaved round by round (A B C, C B A, ...).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench.audio import SpeechBank
from bench.common import Context, Goal, Result, Table, log, run_json_subprocess
from bench.suites.tuning import runtime_version

ROUNDS = 3


def run(ctx: Context, result: Result) -> None:
    if not ctx.runtime_pythons:
        raise RuntimeError("give one --runtime-python per ONNX Runtime release to compare (see the suite's doc)")
    recording = SpeechBank(ctx.cache).recording("scaling-300s", 300, "wav", seed=77)
    spec = json.dumps({"runner": "chunked", "model": str(ctx.model), "files": [str(recording.path)]})
    pythons = {runtime_version(py): py for py in (ctx.python, *ctx.runtime_pythons)}
    reference = next(iter(pythons))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in pythons}
    rounds = 2 if ctx.quick else ROUNDS
    for r in range(rounds):
        for name in list(pythons) if r % 2 == 0 else list(reversed(pythons)):
            measured = run_json_subprocess([pythons[name], "-m", "bench.case", spec], timeout=900)
            log(f"runtimes round {r + 1}: {name} {measured['x_realtime']}x real time")
            runs[name].append(measured)
    base = statistics.median(m["x_realtime"] for m in runs[reference])
    rows = []
    for name, measured in runs.items():
        speed = statistics.median(m["x_realtime"] for m in measured)
        rows.append(
            [
                name + (" (this environment)" if name == reference else ""),
                round(speed, 1),
                round(speed / base, 2),
                round(statistics.median(m["cpu_seconds"] for m in measured), 1),
                max(round(m["peak_rss"] / 2**20) for m in measured),
                ", ".join(str(m["x_realtime"]) for m in measured),
            ]
        )
    result.tables.append(
        Table(
            "Our engine on the 5-minute recording, per ONNX Runtime release (median of the rounds)",
            ["onnxruntime", "x real time", "vs this environment", "CPU seconds", "peak RSS MB", "rounds"],
            rows,
        )
    )
    best = max(rows[1:], key=lambda row: row[1])
    result.goals.append(
        Goal(
            "the pinned release is as fast as the newest measured",
            ">= 0.97x the fastest other release",
            f"{rows[0][1]}x real time against {best[1]} ({best[0]})",
            rows[0][1] >= 0.97 * best[1],
        )
    )
    result.description = __doc__.split("\n\n", 1)[1].strip()
    result.settings = {"rounds": rounds, "recording": str(recording.path)}
    result.data = {"runs": runs}
