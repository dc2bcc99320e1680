"""What every benchmark shares: its context (model, paths, quick mode), results with goals, tables, JSON, stats.

A result is data first (JSON that a later run or a plot can read) and a table second (Markdown, so the same
text is printed on the terminal and pasted into ``docs/benchmarks.md`` without retyping numbers).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import cpu_busy_seconds, load_average, machine_description, own_cpu_seconds

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Context:
    """Everything a benchmark needs to know about this run."""

    model: Path
    out: Path
    cache: Path
    quick: bool
    python: str = sys.executable
    plots: Path | None = None
    compare_models: tuple[Path, ...] = ()  # other model directories for the tuning table (e.g. QInt8 weights)
    openvino_python: str | None = None  # a Python with onnxruntime-openvino and openvino installed
    runtime_pythons: tuple[str, ...] = ()  # Pythons with other ONNX Runtime builds (numpy and onnx-asr too)


@dataclass
class Goal:
    """A target from the issue, with the measured value beside it, so a reader never has to compare by eye."""

    name: str
    target: str
    measured: str
    met: bool

    def line(self) -> str:
        mark = "MET" if self.met else "MISSED"
        return f"- **{mark}**: {self.name}: {self.measured} (goal: {self.target})"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


@dataclass
class Result:
    """One benchmark's outcome: tables to read, goals to check, raw data to keep, and the conditions it ran in."""

    name: str
    description: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    load_start: list[float] = field(default_factory=list)
    load_end: list[float] = field(default_factory=list)
    # Cores kept busy by processes outside this benchmark, on average over its run: the noise on the numbers.
    foreign_cores: float = 0.0
    started_at: str = ""
    wall_seconds: float = 0.0

    def markdown(self) -> str:
        parts = [f"### {self.name}", "", self.description, ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        if self.goals:
            parts += [g.line() for g in self.goals] + [""]
        parts.append(
            f"_Load average (1/5/15 min) at start {_loads(self.load_start)}, at end {_loads(self.load_end)}; "
            f"CPU used by other processes meanwhile: {self.foreign_cores:.2f} cores on average; "
            f"benchmark wall time {self.wall_seconds:.0f} s._"
        )
        return "\n".join(parts)


def run_benchmark(name: str, ctx: Context, body) -> Result:
    """Run ``body(ctx, result)`` and record what the machine was doing around it (it is shared)."""
    result = Result(name=name, description="")
    result.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result.load_start = load_average()
    busy, own = cpu_busy_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    body(ctx, result)
    result.wall_seconds = round(time.perf_counter() - start, 1)
    foreign = (cpu_busy_seconds() - busy) - (own_cpu_seconds() - own)
    result.foreign_cores = round(max(0.0, foreign) / max(result.wall_seconds, 1e-9), 2)
    result.load_end = load_average()
    write_result(result, ctx)
    return result


def write_result(result: Result, ctx: Context) -> None:
    """``NAME.json`` (data, goals, machine) and ``NAME.md`` (the tables) in the output directory."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": result.name,
        "quick": ctx.quick,
        "model": str(ctx.model),
        "model_info": model_info(ctx.model),
        "machine": machine_description(),
        **asdict(result),
    }
    (ctx.out / f"{result.name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (ctx.out / f"{result.name}.md").write_text(result.markdown() + "\n")


def model_info(model: Path) -> dict[str, Any]:
    """Which model was measured: file sizes, and the shape-model builder's record when there is one."""
    info: dict[str, Any] = {
        "files": {p.name: p.stat().st_size for p in sorted(model.glob("*.onnx"))},
    }
    build = model / "BUILD_INFO.json"
    if build.is_file():
        data = json.loads(build.read_text())
        info["shape_model"] = {k: data.get(k) for k in ("weight_type", "opset", "seed", "torch") if k in data} | {
            "n_layers": data.get("hyperparameters", {}).get("n_layers")
        }
    return info


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 1000 samples is the 990th smallest, a real sample)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def run_json_subprocess(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a benchmark helper in a fresh Python process and read the JSON object it prints last.

    A fresh process per case makes peak RSS (``ru_maxrss``) belong to that case alone.
    """
    proc = subprocess.run(
        list(args),
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _loads(values: Sequence[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "n/a"


def mb(n_bytes: float) -> float:
    """Megabytes (10**6), the unit of the issue's memory goals ("1.5 GB")."""
    return n_bytes / 1e6


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def interleaved(variants: dict[str, Callable[[], None]], rounds: int) -> dict[str, dict[str, Any]]:
    """Time each variant once per round, in the order A B C then C B A, so a shared machine's load (which drifts)
    hits them alike; the median of the rounds, every round, and the highest 1-minute load seen."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    loads: list[float] = []
    for r in range(rounds):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))  # A B C, C B A, ...
        for name in names:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
            loads.append(load_average()[0])
    return {
        name: {"median": statistics.median(t), "rounds": [round(x, 2) for x in t], "load": round(max(loads), 2)}
        for name, t in times.items()
    }


def onnx_asr_parakeet(model: Path) -> Any:
    """Parakeet TDT 0.6B v3 through plain onnx-asr with timestamps, on the server's session options (a thread per
    core, no spinning): the model alone, for suites that compare pipelines or batching around it."""
    import onnx_asr

    from wazo_stt.engine.parakeet import PARAKEET_MODELS
    from wazo_stt.engine.runtime import session_options

    return onnx_asr.load_model(
        PARAKEET_MODELS["parakeet-tdt-0.6b-v3"].onnx_asr_name,
        model,
        quantization="int8",
        sess_options=session_options(0),
        providers=["CPUExecutionProvider"],
    ).with_timestamps()
