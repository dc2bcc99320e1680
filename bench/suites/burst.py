"""Burst against plain onnx-asr: 30 voicemails, our server against onnx-asr run sequentially in-process.

Issue 18's goal: "burst of 30-50 voicemails: server drains at >= 1.5x the audio-seconds-per-second of plain
onnx-asr run sequentially in-process on the same files, with the first result no later than today".

* **onnx-asr sequential**: ``onnx_asr.load_model("nemo-parakeet-tdt-0.6b-v3", MODEL, quantization="int8")`` in
  this process, then for each file in order: decode (PyAV, as the server does: onnx-asr reads only PCM WAV) and
  ``recognize(samples, sample_rate=16000)`` on the whole file (no VAD). Model loading and one warm-up call are
  outside the timed region; the first result is when the first file's text is back. It runs with NumPy's own
  BLAS threads, as in a user's process; the row "one BLAS thread" runs it as our engine keeps NumPy
  (engine/runtime.py), to show what that part of our lead is worth to plain onnx-asr too.
* **our engine, two at once, in-process**: the server's engine (``load_engines``: VAD, chunks, recogniser) in this
  process, two files at a time from a thread pool, as ``WORKERS=auto`` runs them, with no HTTP, upload check or
  queue: what the server's own costs are measured against.
* **server**: ``wazo-stt serve`` (bench/server.py) with ``WORKERS=N``, warmed up by one job, then all files
  POSTed at once (asynchronous mode, one client thread each); /health is polled every 0.1 s: the first result is
  the first poll that counts one more completed job, drained when every job is completed or failed.

Variants are interleaved round by round (A B C, A B C ...) so the shared machine's load hits them alike; each
row keeps its rounds, the load average around it and the highest 1-minute load seen while it ran.
``BURST_ROUNDS`` (default 1) and ``BURST_WORKERS`` (default "auto,1": the default, then one job at a time) change
the rounds and the server variants; an item ``N:C`` also sets ``CHUNKS_AT_ONCE=C``, and ``filed`` runs the server
as configured when issue 18 was filed (one inference at a time, the encoder as downloaded, glibc's heap as it
comes), whose peak RSS is the goal's "today".
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import onnx_asr
from threadpoolctl import threadpool_info, threadpool_limits

from bench.audio import Recording, SpeechBank, voicemail_durations, voicemail_mix
from bench.common import Context, Goal, Result, Table, log
from bench.machine import load_average
from bench.server import serve
from wazo_stt.audio import decode_audio
from wazo_stt.config import Settings
from wazo_stt.engine.loader import load_engines

COUNT = 30
HEALTH_POLL = 0.1
GOAL_RATIO = 1.5


@contextmanager
def _load_watch(every: float = 2.0) -> Iterator[dict[str, Any]]:
    """The 1-minute load average at start, at end and at its highest while the block runs."""
    record: dict[str, Any] = {"start": load_average(), "max": load_average()[0]}
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            record["max"] = max(record["max"], load_average()[0])

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        stop.set()
        thread.join()
        record["end"] = load_average()


def _onnx_asr_sequential(model: Any, files: list[Recording]) -> dict[str, float]:
    start, cpu = time.perf_counter(), time.process_time()
    first = None
    for rec in files:
        model.recognize(decode_audio(rec.path).samples, sample_rate=16000)
        first = first if first is not None else time.perf_counter() - start
    return {"drain_s": time.perf_counter() - start, "first_s": first or 0.0, "cpu_s": time.process_time() - cpu}


def _with_blas_threads(threads: int, model: Any, files: list[Recording]) -> dict[str, float]:
    with threadpool_limits(limits=threads, user_api="blas"):
        return _onnx_asr_sequential(model, files)


def _engine_two_at_once(engine: Any, files: list[Recording]) -> dict[str, float]:
    start, cpu = time.perf_counter(), time.process_time()
    firsts: list[float] = []

    def one(rec: Recording) -> None:
        engine.transcribe(decode_audio(rec.path).samples, None)
        firsts.append(time.perf_counter() - start)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, files))
    return {"drain_s": time.perf_counter() - start, "first_s": min(firsts), "cpu_s": time.process_time() - cpu}


# The configuration the issue was filed with: one job at a time, one inference at a time, the encoder as
# downloaded, and glibc's heap as it comes (8 arenas per core, its sliding mapping threshold): setting one of
# glibc's variables turns wazo_stt/heap.py's tuning off.
AS_FILED = "filed"


def _server_settings(variant: str) -> dict[str, str]:
    """``BURST_WORKERS`` item -> the server's environment: ``N`` sets WORKERS, ``N:C`` CHUNKS_AT_ONCE too,
    ``filed`` the filing's configuration."""
    if variant == AS_FILED:
        return {
            "WORKERS": "1",
            "CHUNKS_AT_ONCE": "1",
            "FLOAT_CONVS": "false",
            "MALLOC_ARENA_MAX": str(8 * (os.cpu_count() or 1)),
        }
    workers, _, chunks = variant.partition(":")
    return {"WORKERS": workers} | ({"CHUNKS_AT_ONCE": chunks} if chunks else {})


def _server_burst(ctx: Context, variant: str, files: list[Recording], warm: Recording) -> dict[str, float]:
    with serve(ctx.model, _server_settings(variant), warm_up=warm.path) as server:
        done_before = _finished(server.client.get("/health").json())
        server.reset_peak()  # the burst's peak, not the model loading's
        cpu = server.cpu_seconds()
        stop = threading.Event()
        seen: dict[str, float] = {}
        start = time.perf_counter()

        def watch() -> None:
            while not stop.is_set():
                finished = _finished(server.client.get("/health").json()) - done_before
                now = time.perf_counter() - start
                if finished >= 1 and "first_s" not in seen:
                    seen["first_s"] = now
                if finished >= len(files):
                    seen["drain_s"] = now
                    return
                stop.wait(HEALTH_POLL)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with ThreadPoolExecutor(len(files)) as pool:
            jobs = list(pool.map(lambda f: server.submit(f.path)[0].json()["job_id"], files))
        seen["accepted_s"] = time.perf_counter() - start
        watcher.join()
        seen["cpu_s"] = server.cpu_seconds() - cpu
        seen["peak_rss_mb"] = server.memory()["hwm"] / 2**20
        statuses = [server.client.get(f"/v1/audio/transcriptions/{j}").json()["status"] for j in jobs]
    seen["completed"] = statuses.count("completed")
    return seen


def _finished(health: dict[str, Any]) -> int:
    return health["db_stats"]["completed"] + health["db_stats"]["failed"]


def run(ctx: Context, result: Result) -> None:
    count = 3 if ctx.quick else COUNT
    rounds = int(os.environ.get("BURST_ROUNDS", "1"))
    worker_counts = [n.strip() for n in os.environ.get("BURST_WORKERS", "auto,1").split(",") if n.strip()]
    durations = voicemail_durations(count, seed=5, high=20.0 if ctx.quick else 120.0)
    bank = SpeechBank(ctx.cache)
    files = voicemail_mix(bank, durations, "burst")  # the first 30 of the throughput table's 50
    (warm,) = voicemail_mix(bank, [10], "warm")
    audio_total = sum(f.duration for f in files)
    result.description = __doc__.split("\n\n", 1)[1].strip() + (
        f"\n\n{count} voicemails ({min(durations):g}-{max(durations):g} s, {audio_total:.0f} s in all; WAV, "
        f"u-law WAV and MP3), {rounds} round(s)."
    )
    # NumPy's own BLAS thread count, before load_engines keeps it to one in this process (engine/runtime.py):
    # plain onnx-asr runs with it, as a user's process would, and once more with one thread, to show that part.
    numpy_blas = max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)
    log(f"burst: loading onnx-asr from {ctx.model}")
    model = onnx_asr.load_model("nemo-parakeet-tdt-0.6b-v3", str(ctx.model), quantization="int8")
    model.recognize(decode_audio(warm.path).samples, sample_rate=16000)

    engine = load_engines(Settings(_env_file=None, model_path=ctx.model, embedded_fallback=False)).resolve(None)
    engine.transcribe(decode_audio(warm.path).samples, None)

    variants: dict[str, Callable[[], dict[str, float]]] = {
        "onnx-asr sequential, in-process": lambda: _with_blas_threads(numpy_blas, model, files),
        "onnx-asr sequential, one BLAS thread": lambda: _with_blas_threads(1, model, files),
        "our engine, two at once, in-process": lambda: _engine_two_at_once(engine, files),
    }
    server_labels: dict[str, str] = {}
    for n in worker_counts:
        server_labels[n] = "server " + " ".join(f"{k}={v}" for k, v in _server_settings(n).items())
        server_labels[n] += " (default)" if n == "auto" else ""
        variants[server_labels[n]] = lambda n=n: _server_burst(ctx, n, files, warm)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, body in variants.items():
            log(f"burst round {r + 1}/{rounds}: {name}")
            with _load_watch() as load:
                measured = body()
            measured["load"] = load
            log(f"  drained in {measured['drain_s']:.1f} s, first result {measured['first_s']:.1f} s")
            runs[name].append(measured)

    base = statistics.median(m["drain_s"] for m in runs["onnx-asr sequential, in-process"])
    base_first = statistics.median(m["first_s"] for m in runs["onnx-asr sequential, in-process"])
    base_cpu = statistics.median(m["cpu_s"] for m in runs["onnx-asr sequential, in-process"])
    rows = []
    for name, measured in runs.items():
        drain = statistics.median(m["drain_s"] for m in measured)
        first = statistics.median(m["first_s"] for m in measured)
        cpu = statistics.median(m["cpu_s"] for m in measured)
        peak = [m["peak_rss_mb"] for m in measured if "peak_rss_mb" in m]
        rows.append(
            [
                name,
                f"{measured[-1].get('completed', count)}/{count}",
                round(drain, 1),
                round(audio_total / drain, 2),
                round(base / drain, 2),
                round(first, 1),
                round(cpu, 1),
                round(base_cpu / cpu, 2),
                f"{statistics.median(peak):.0f} ({max(peak):.0f})" if peak else "",
                ", ".join(f"{m['drain_s']:.1f}" for m in measured),
                ", ".join(f"{m['load']['start'][0]:.1f}-{m['load']['max']:.1f}" for m in measured),
            ]
        )
    result.tables.append(
        Table(
            f"{count} voicemails ({audio_total:.0f} s of audio), median of {rounds} round(s)",
            [
                "variant",
                "completed",
                "drained s",
                "audio s / wall s",
                "vs onnx-asr",
                "first result s",
                "CPU s",
                "audio per CPU-s vs onnx-asr",
                "peak RSS MB, median (max)",
                "rounds s",
                "load 1-min (start-max)",
            ],
            rows,
            note="first result: seconds from the start of the burst (onnx-asr: the first file's text back; server: "
            "the first job seen completed by /health, polled every 0.1 s). CPU s: the benchmark process's CPU "
            "for the in-process rows, the server process's for the server (its HTTP, upload checks and queue "
            "included); the machine's noise moves it less than wall time. peak RSS: the server's highest "
            "resident memory during the burst, after its warm-up (the in-process rows share one process with both "
            "models); the median of the rounds, their maximum in brackets.",
        )
    )
    best_name, best = max(
        ((r[0], r[4]) for r in rows if r[0].startswith("server")), key=lambda x: x[1], default=("", 0.0)
    )
    best_first = next((r[5] for r in rows if r[0] == best_name), float("nan"))
    result.goals.append(
        Goal(
            "burst drain rate vs plain onnx-asr sequential",
            f">= {GOAL_RATIO}x",
            f"{best}x ({best_name}); first result {best_first} s (onnx-asr's first: {base_first:.1f} s)",
            best >= GOAL_RATIO,
        )
    )
    filed, default = server_labels.get(AS_FILED), server_labels.get("auto")
    if filed and default:
        peaks = {name: statistics.median(m["peak_rss_mb"] for m in runs[name]) for name in (filed, default)}
        result.goals.append(
            Goal(
                "peak RSS during the burst no worse than the server as filed (median of the rounds)",
                f"<= {peaks[filed]:.0f} MB (as filed)",
                f"{peaks[default]:.0f} MB with the defaults",
                peaks[default] <= peaks[filed],
            )
        )
    result.data = {"audio_seconds": audio_total, "runs": runs}
    result.settings = {"count": count, "rounds": rounds, "durations": durations, "workers": worker_counts}
