"""Run the benchmark suite: ``python -m bench.run --model DIR [--out DIR] [--only NAME ...] [--quick]``.

Each benchmark prints its tables (Markdown) on stdout and writes ``NAME.json`` and ``NAME.md`` to ``--out``;
``SUMMARY.md`` there gathers the machine description and every table present, for ``docs/benchmarks.md``.
Nothing is downloaded: the model comes from ``--model`` and the audio is generated (espeak-ng, sox, ffmpeg).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench.common import REPO_ROOT, Context, log, run_benchmark
from bench.machine import load_average, machine_description, machine_markdown
from bench.suites import BENCHMARKS

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wazo-stt-bench"


def wait_for_quiet(max_seconds: float, threshold: float) -> list[float]:
    """Wait (at most ``max_seconds``) until the 1-minute load average drops below ``threshold``.

    The machine may be shared: starting while someone else's test suite runs would measure them.
    Returns the load average at the moment the benchmarks start, which is recorded either way.
    """
    deadline = time.monotonic() + max_seconds
    while (load := load_average())[0] >= threshold and time.monotonic() < deadline:
        log(f"load average {load[0]:.2f} >= {threshold}: waiting for a quieter machine")
        time.sleep(15)
    return load_average()


def write_summary(out: Path) -> Path:
    """SUMMARY.md: the machine and the tables of every benchmark result in ``out`` (latest run of each)."""
    parts = ["# Benchmark results", ""]
    machine = None
    for name in BENCHMARKS:
        json_path = out / f"{name}.json"
        md_path = out / f"{name}.md"
        if not (json_path.is_file() and md_path.is_file()):
            continue
        data = json.loads(json_path.read_text())
        machine = machine or data["machine"]
        mode = " (quick mode)" if data.get("quick") else ""
        parts += [
            md_path.read_text().strip(),
            "",
            f"_Model: `{data['model']}`{mode}; run at {data['started_at']}._",
            "",
        ]
    if machine:
        parts[2:2] = ["## Machine", "", machine_markdown(machine), "", "## Results", ""]
    path = out / "SUMMARY.md"
    path.write_text("\n".join(parts))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="directory of the Parakeet ONNX files")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="where JSON/MD results go")
    parser.add_argument(
        "--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--quick", action="store_true", help="shorter inputs and fewer rounds (use a 2-layer model)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"generated audio (default: {DEFAULT_CACHE})")
    parser.add_argument("--plots", type=Path, help="write PNG plots here (e.g. docs/img)")
    parser.add_argument(
        "--compare-model", type=Path, action="append", default=[], help="another model directory for the tuning table"
    )
    parser.add_argument(
        "--openvino-python", help="Python of a virtualenv with onnxruntime-openvino, openvino, onnx-asr"
    )
    parser.add_argument(
        "--runtime-python",
        action="append",
        default=[],
        help="Python of a virtualenv with another ONNX Runtime build (and numpy, onnx-asr) for the tuning table",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-minute load average to drop below 1.0 (shared machines)",
    )
    args = parser.parse_args(argv)

    model = args.model.resolve()
    if not (model / "encoder-model.int8.onnx").is_file():
        parser.error(f"{model} has no encoder-model.int8.onnx (see docs/benchmarks.md for how to get a model)")
    ctx = Context(
        model=model,
        out=args.out.resolve(),
        cache=args.cache.resolve(),
        quick=args.quick,
        plots=args.plots.resolve() if args.plots else None,
        compare_models=tuple(p.resolve() for p in args.compare_model),
        openvino_python=args.openvino_python,
        runtime_pythons=tuple(args.runtime_python),
    )
    if args.wait_quiet:
        wait_for_quiet(args.wait_quiet, 1.0)
    machine = machine_description()
    log(f"{machine['cpu_model']}, {machine['usable_cpus']} CPUs, load {machine['load_average']}; model {model}")
    failed = []
    for name in args.only or list(BENCHMARKS):
        log(f"== {name} ==")
        try:
            result = run_benchmark(name, ctx, BENCHMARKS[name])
        except Exception as exc:  # one broken benchmark must not lose the others' results
            log(f"{name} failed: {type(exc).__name__}: {exc}")
            failed.append(name)
            continue
        print(result.markdown(), "\n", flush=True)
    summary = write_summary(ctx.out)
    log(f"results in {ctx.out} (summary: {summary})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
