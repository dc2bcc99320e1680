"""Responsiveness: do status polls and /health stay fast while a long file is being transcribed?

Telephony clients poll every 1-2 s and a load balancer probes /health; if inference held the event loop (or the
GIL) for long, those would time out. One client polls the job and /health alternately, every 10 ms, for as
long as a 5-minute recording is transcribed; the same loop runs first on the idle server as a baseline, and
last while two such recordings are transcribed at once (what ``WORKERS=auto`` does under load), polling the first.
"""

from __future__ import annotations

import threading
import time

import httpx

from bench.audio import SpeechBank, voicemail_mix
from bench.common import Context, Goal, Result, Table, log, percentile
from bench.server import ServerProcess, serve

POLL_GAP = 0.01
IDLE_SECONDS = 5.0
GOAL_P99_MS = 50.0


def _poll(server: ServerProcess, job_id: str | None, stop: threading.Event) -> dict[str, list[float]]:
    """Latency in ms of each GET, by endpoint, until ``stop`` is set (or the job is finished)."""
    latencies: dict[str, list[float]] = {"job": [], "health": []}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        while not stop.is_set():
            if job_id is not None:
                t = time.perf_counter()
                response = client.get(f"/v1/audio/transcriptions/{job_id}")
                latencies["job"].append(round((time.perf_counter() - t) * 1000, 3))
                if response.json()["status"] in ("completed", "failed"):
                    stop.set()
            t = time.perf_counter()
            client.get("/health")
            latencies["health"].append(round((time.perf_counter() - t) * 1000, 3))
            time.sleep(POLL_GAP)
    return latencies


def run(ctx: Context, result: Result) -> None:
    seconds = 120 if ctx.quick else 300
    result.description = (
        "One client polls `GET /v1/audio/transcriptions/{id}` and `GET /health` alternately, "
        f"{POLL_GAP * 1000:.0f} ms apart, while a {seconds / 60:g}-minute recording is transcribed "
        f"(and for {IDLE_SECONDS:g} s on the idle server first, as a baseline). "
        "Latency as the client sees it, over loopback with keep-alive."
    )
    bank = SpeechBank(ctx.cache)
    (recording,) = voicemail_mix(bank, [seconds], "responsiveness")
    (warm,) = voicemail_mix(bank, [10], "warm")
    with serve(ctx.model, warm_up=warm.path) as server:
        stop = threading.Event()
        threading.Timer(IDLE_SECONDS, stop.set).start()
        idle = _poll(server, None, stop)
        log(f"responsiveness: transcribing {seconds} s while polling")
        response, start = server.submit(recording.path)
        job_id = response.json()["job_id"]
        busy = _poll(server, job_id, threading.Event())
        busy_seconds = time.perf_counter() - start
        status = server.client.get(f"/v1/audio/transcriptions/{job_id}").json()["status"]
        log(f"responsiveness: two {seconds} s recordings at once while polling")
        first = server.submit(recording.path)[0].json()["job_id"]
        server.submit(recording.path)
        pair = _poll(server, first, threading.Event())

    rows = []
    for phase, data in (("idle", idle), ("while transcribing", busy), ("while transcribing two at once", pair)):
        for endpoint, values in data.items():
            if values:
                rows.append(
                    [
                        phase,
                        "GET /v1/audio/transcriptions/{id}" if endpoint == "job" else "GET /health",
                        len(values),
                        round(percentile(values, 50), 2),
                        round(percentile(values, 99), 2),
                        round(max(values), 1),
                    ]
                )
    result.tables.append(
        Table(
            "Poll latency (ms)",
            ["server", "request", "n", "p50 ms", "p99 ms", "max ms"],
            rows,
            note=f"Job {status} after {busy_seconds:.1f} s ({recording.duration / busy_seconds:.1f}x real time "
            "while being polled).",
        )
    )
    both = busy["job"] + busy["health"] + pair["job"] + pair["health"]
    p99 = percentile(both, 99)
    result.goals.append(
        Goal("p99 of both polls while transcribing", f"<= {GOAL_P99_MS:g} ms", f"{p99:.1f} ms", p99 <= GOAL_P99_MS)
    )
    result.settings = {"audio_seconds": recording.duration, "poll_gap_s": POLL_GAP, "idle_seconds": IDLE_SECONDS}
    result.data = {"idle": idle, "busy": busy, "pair": pair, "busy_seconds": busy_seconds, "status": status}
