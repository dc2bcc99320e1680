"""Engine tuning: ONNX Runtime session options, int8 weight type and other CPU runtimes, side by side.

Every configuration recognises the same chunks (the first chunks our planner cuts from the 5-minute recording:
Silero VAD, at most 20 s, as the server cuts them) through plain onnx-asr, in a fresh process, so only the
option under test differs.
Configurations run in rounds (every configuration once per round) and the fastest round counts: on a shared
machine, a slower round measures the neighbours, not the option.

Optional rows, when the run is given what they need:
- another model directory (``--compare-model``), e.g. the shape model built with ``--weight-type QInt8``;
- a Python with ``onnxruntime-openvino`` and ``openvino`` (``--openvino-python``): the OpenVINO execution
  provider through onnx-asr, and, because that provider may fail on this graph, the encoder alone on
  OpenVINO's own runtime against the encoder alone on ONNX Runtime.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.audio import SpeechBank
from bench.common import Context, Goal, Result, Table, log, mb, run_json_subprocess

FULL_SECONDS = 90.0
QUICK_SECONDS = 60.0
SAMPLE_RATE = 16_000
CHUNK_SECONDS = 20.0  # the server's bound for Parakeet (ParakeetRecognizer.max_chunk_seconds)


@dataclass
class Config:
    label: str
    spec: dict[str, Any] = field(default_factory=dict)
    python: str | None = None
    group: str = "session options"  # rows are compared within a group (same runner)


# What wazo_stt.engine.runtime.session_options sets on top of ONNX Runtime's defaults (this runner must not
# import wazo_stt: it also runs in virtualenvs with other ONNX Runtime builds).
NO_SPIN = {"session.intra_op.allow_spinning": "0"}


def _ours(**ort: Any) -> dict[str, Any]:
    """Our session options with one change: each row differs from the default row in what its label says."""
    return {"ort": {"config_entries": NO_SPIN, **ort}}


def _configs(ctx: Context) -> list[Config]:
    configs = [
        Config("default: threads=0 (one per core), ORT_ENABLE_ALL, arena on, sequential, no spinning", _ours()),
        Config("spin-waiting on (ONNX Runtime's own default)", {}),
        Config("intra_op_threads=1", _ours(intra_op_threads=1)),
        Config("intra_op_threads=2", _ours(intra_op_threads=2)),
        Config("graph optimisation DISABLE_ALL", _ours(graph_optimization_level="DISABLE_ALL")),
        Config("graph optimisation BASIC", _ours(graph_optimization_level="BASIC")),
        Config("graph optimisation EXTENDED", _ours(graph_optimization_level="EXTENDED")),
        Config("enable_cpu_mem_arena=False", _ours(enable_cpu_mem_arena=False)),
        Config("execution_mode=PARALLEL, inter_op_threads=2", _ours(execution_mode="parallel", inter_op_threads=2)),
        Config("2 requests at once x intra_op_threads=1 (WORKERS=2)", {"streams": 2, **_ours(intra_op_threads=1)}),
        Config("2 requests at once x threads=0 (WORKERS=2, default threads)", {"streams": 2, **_ours()}),
    ]
    for model in ctx.compare_models:
        weight = _weight_type(model)
        configs.append(
            Config(f"weights {weight} ({model.name})", {"model": str(model), **_ours()}, group="int8 weight type")
        )
    if ctx.runtime_pythons:  # the same default options on other builds, against this environment's build
        group = "ONNX Runtime build, CPU EP"
        configs.append(Config(f"{runtime_version(ctx.python)} (this environment)", _ours(), group=group))
        configs += [Config(runtime_version(py), _ours(), python=py, group=group) for py in ctx.runtime_pythons]
    if ctx.openvino_python:
        configs.append(
            Config(
                "OpenVINO EP (onnxruntime-openvino), device CPU",
                {"providers": [["OpenVINOExecutionProvider", {"device_type": "CPU"}]], **_ours()},
                python=ctx.openvino_python,
                group="execution provider",
            )
        )
        configs.append(
            Config(
                "CPU EP of the same onnxruntime-openvino build",
                _ours(),
                python=ctx.openvino_python,
                group="execution provider",
            )
        )
        for model in [ctx.model, *ctx.compare_models]:
            suffix = f" ({_weight_type(model)})"
            configs += [
                Config(
                    f"encoder alone, ONNX Runtime CPU{suffix}",
                    {"runner": "encoder", "model": str(model), **_ours()},
                    group="encoder alone",
                ),
                Config(
                    f"encoder alone, OpenVINO runtime, default precision{suffix}",
                    {"runner": "encoder", "backend": "openvino", "model": str(model)},
                    python=ctx.openvino_python,
                    group="encoder alone",
                ),
                Config(
                    f"encoder alone, OpenVINO runtime, f32 precision{suffix}",
                    {
                        "runner": "encoder",
                        "backend": "openvino",
                        "model": str(model),
                        "openvino_config": {"INFERENCE_PRECISION_HINT": "f32"},
                    },
                    python=ctx.openvino_python,
                    group="encoder alone",
                ),
            ]
    return configs


def runtime_version(python: str) -> str:
    """Which ONNX Runtime package and version a Python has, for the row's label."""
    code = (
        "import importlib.metadata as m\n"
        "for name in ('onnxruntime', 'onnxruntime-openvino'):\n"
        "    try: print(name, m.version(name)); break\n"
        "    except m.PackageNotFoundError: pass"
    )
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False).stdout.strip()
    return found or f"? ({python})"


def _weight_type(model: Path) -> str:
    info = model / "BUILD_INFO.json"
    if info.is_file():
        return str(json.loads(info.read_text()).get("weight_type", "?"))
    return "?"


def _chunks(ctx: Context, seconds: float) -> tuple[Path, list[float]]:
    """The first chunks the planner cuts from the 5-minute recording, up to ``seconds`` of audio, as an .npz."""
    from wazo_stt.audio import decode_audio
    from wazo_stt.engine.pipeline import ChunkPlanner
    from wazo_stt.engine.vad import SpeechDetector

    bank = SpeechBank(ctx.cache)
    recording = bank.recording("scaling-300s", 300, "wav", seed=77)
    out = bank.cache / f"tuning-chunks-{seconds:g}s-max{CHUNK_SECONDS:g}s.npz"
    audio = decode_audio(recording.path).samples
    chunks = ChunkPlanner(SpeechDetector(), max_seconds=CHUNK_SECONDS).plan(audio)
    arrays: list[np.ndarray] = []
    for chunk in chunks:
        arrays.append(audio[chunk.start : chunk.end])
        if sum(len(a) for a in arrays) >= seconds * SAMPLE_RATE:
            break
    np.savez(out, **{f"chunk{i:03d}": a for i, a in enumerate(arrays)})
    return out, [round(len(a) / SAMPLE_RATE, 2) for a in arrays]


def _error_summary(message: str) -> str:
    lines = [line for line in message.splitlines() if "Error" in line or "FAIL" in line or "INVALID" in line]
    text = lines[-1] if lines else message.strip().splitlines()[-1]
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return text[-160:]


def run(ctx: Context, result: Result) -> None:
    seconds = QUICK_SECONDS if ctx.quick else FULL_SECONDS
    rounds = 1 if ctx.quick else 2
    chunks_path, lengths = _chunks(ctx, seconds)
    audio = sum(lengths)
    result.description = (
        f"{len(lengths)} chunks ({audio:.0f} s of speech, {min(lengths):g}-{max(lengths):g} s each, cut by our planner "
        f"from the 5-minute recording) recognised by plain onnx-asr in a fresh process per configuration; best of "
        f"{rounds} round(s). x real time = chunk audio seconds / wall seconds."
    )
    configs = _configs(ctx)
    runs: dict[str, list[dict[str, Any]]] = {c.label: [] for c in configs}
    errors: dict[str, str] = {}
    for round_no in range(rounds):
        for config in configs:
            if config.label in errors:
                continue
            log(f"tuning round {round_no + 1}/{rounds}: {config.label}")
            spec = {"runner": "onnx-asr", "model": str(ctx.model), "chunks": str(chunks_path), **config.spec}
            try:
                out = run_json_subprocess(
                    [config.python or ctx.python, "-m", "bench.case", json.dumps(spec)], timeout=1800
                )
            except (RuntimeError, TimeoutError) as exc:
                errors[config.label] = _error_summary(str(exc))
                log(f"  failed: {errors[config.label]}")
                continue
            out.pop("items", None)
            runs[config.label].append(out)

    def best(label: str) -> dict[str, Any] | None:
        return min(runs[label], key=lambda r: r["total_wall"]) if runs[label] else None

    rows = []
    reference: dict[str, float] = {}
    for config in configs:
        top = best(config.label)
        if config.group not in reference and top is not None:
            reference[config.group] = top["x_realtime"]
        if top is None:
            rows.append([config.group, config.label, "fails", "", "", "", errors.get(config.label, "")])
            continue
        rounds_x = ", ".join(f"{r['x_realtime']:.2f}" for r in runs[config.label])
        rows.append(
            [
                config.group,
                config.label,
                round(top["x_realtime"], 2),
                f"{top['x_realtime'] / reference[config.group]:.2f}",
                round(mb(max(r["peak_rss"] for r in runs[config.label]))),
                round(top["cpu_seconds"] / top["total_wall"], 2),
                f"rounds: {rounds_x}; load {top['load_seconds']:.1f} s",
            ]
        )
    result.tables.append(
        Table(
            "Engine configurations",
            ["group", "configuration", "x real time", "vs first of group", "peak RSS MB", "cores busy", "notes"],
            rows,
            note="`cores busy` = process CPU seconds / wall seconds while recognising. The first row of each group is "
            "its reference; the encoder-alone rows time the encoder graph only, on input of each chunk's shape.",
        )
    )
    default = best(configs[0].label)
    session_rows = [(c.label, best(c.label)) for c in configs if c.group == "session options" and best(c.label)]
    fastest_label, fastest = max(session_rows, key=lambda item: item[1]["x_realtime"])  # type: ignore[index]
    if default is not None:
        gain = fastest["x_realtime"] / default["x_realtime"]  # type: ignore[index]
        result.goals.append(
            Goal(
                "our defaults are the fastest session options (within 3%)",
                "default >= 0.97 x the fastest",
                f"fastest: {fastest_label} at {gain:.2f} x the default",
                gain <= 1 / 0.97,
            )
        )
    result.settings = {"chunk_seconds": lengths, "rounds": rounds, "configs": [c.__dict__ for c in configs]}
    result.data = {"runs": runs, "errors": errors}
    if ctx.plots is not None:
        from bench.plots import tuning_plot

        plot_rows = [
            (c.label, best(c.label)["x_realtime"], 0.0)  # type: ignore[index]
            for c in configs
            if c.group != "encoder alone" and best(c.label) is not None
        ]
        result.data["plot"] = str(tuning_plot(plot_rows, ctx.plots / "tuning.png"))
