"""Hostile clients (issue 14): a legitimate voicemail and /health under a starvation attack, and what the
server's own HTTP limits cost in request throughput.

Starvation: 40 "bombs" are submitted at once, each 7 s of speech followed by minutes of digital silence in
FLAC (a few hundred KB that decode to minutes), then a legitimate 10 s voicemail; its latency (submission to
transcript) and /health's are compared with the idle server's. Throughput: 16 connections poll a job's
status as fast as they can, against the server as it runs (uvicorn's h11 with the limits of
``api/http_limits.py``) and against uvicorn's defaults (httptools, no limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

from bench.audio import RATE, SpeechBank, voicemail_mix
from bench.common import REPO_ROOT, Context, Goal, Result, Table, log, percentile
from bench.server import ServerProcess, serve

BOMBS = 40
HEALTH_GAP = 0.05
POLL_CONNECTIONS = 16
POLL_SECONDS = 5.0
ROUNDS = 3


def _bomb(bank: SpeechBank, cache: Path, silence_s: int) -> Path:
    """7 s of speech, then `silence_s` of digital zeros, in FLAC (zeros cost FLAC ~20 bytes per block)."""
    path = cache / f"hostile-bomb-{silence_s}s.flac"
    if path.is_file():
        return path
    speech, _ = bank.compose(7.0, seed=7)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=RATE, layout="mono")
        pieces = [speech] + [np.zeros(RATE, dtype=np.int16)] * silence_s
        pts = 0
        for piece in pieces:
            frame = av.AudioFrame.from_ndarray(piece[None, :], format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, pts
            pts += piece.size
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    path.write_bytes(buffer.getvalue())
    return path


def _health_while(server: ServerProcess, stop: threading.Event) -> list[float]:
    latencies = []
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        while not stop.is_set():
            t = time.perf_counter()
            client.get("/health")
            latencies.append((time.perf_counter() - t) * 1000)
            time.sleep(HEALTH_GAP)
    return latencies


def _voicemail_latency(server: ServerProcess, path: Path) -> tuple[float, list[float]]:
    """Seconds from submission to transcript, and /health latencies (ms) measured meanwhile."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        health = pool.submit(_health_while, server, stop)
        timing = server.transcribe(path, poll_every=0.05)
        stop.set()
        return timing.completed - timing.submitted, health.result()


def _submit_bombs_async(server: ServerProcess, bomb: Path) -> tuple[dict[int, int], float]:
    """Fire the bombs asynchronously (telephony style, with identities) and return the codes and the time."""
    data = bomb.read_bytes()

    async def fire() -> list[int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/v1/audio/transcriptions",
                        files={"file": (bomb.name, data)},
                        data={"user_uuid": "attacker", "message_id": f"bomb-{i}"},
                    )
                    for i in range(BOMBS)
                )
            )
        return [r.status_code for r in responses]

    start = time.perf_counter()
    codes: dict[int, int] = {}
    for code in asyncio.run(fire()):
        codes[code] = codes.get(code, 0) + 1
    return codes, time.perf_counter() - start


def _poll_throughput(server: ServerProcess, job_id: str) -> tuple[float, list[float]]:
    """Requests per second and latencies (ms) of POLL_CONNECTIONS keep-alive clients polling one job."""
    latencies: list[float] = []

    async def client_loop(deadline: float) -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                response = await client.get(f"/v1/audio/transcriptions/{job_id}")
                response.raise_for_status()
                latencies.append((time.perf_counter() - t) * 1000)

    async def main() -> None:
        deadline = time.perf_counter() + POLL_SECONDS
        await asyncio.gather(*(client_loop(deadline) for _ in range(POLL_CONNECTIONS)))

    asyncio.run(main())
    return len(latencies) / POLL_SECONDS, latencies


def _attack(server: ServerProcess, voicemail: Path, bomb: Path) -> dict[str, Any]:
    """The idle figures, then the attack's, on one server."""
    idle = [_voicemail_latency(server, voicemail) for _ in range(3)]
    idle_latency = sorted(s for s, _ in idle)[1]
    log(f"hostile: idle voicemail {idle_latency:.2f} s; firing {BOMBS} bombs")
    codes, firing = _submit_bombs_async(server, bomb)
    log(f"hostile: bombs answered {codes} in {firing:.1f} s; now the voicemail")
    attacked_latency, attacked_health = _voicemail_latency(server, voicemail)
    log(f"hostile: voicemail under attack {attacked_latency:.2f} s")
    drain_start = time.perf_counter()
    while server.client.get("/v1/audio/transcriptions/status").json()["queue_length"]:
        time.sleep(0.5)
    return {
        "idle_latency_s": idle_latency,
        "idle_health_ms": [ms for _, h in idle for ms in h],
        "attacked_latency_s": attacked_latency,
        "attacked_health_ms": attacked_health,
        "bomb_codes": codes,
        "firing_s": firing,
        "drain_s": time.perf_counter() - drain_start,
    }


def _attack_rows(label: str, data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for phase, latency, health in (
        ("idle", data["idle_latency_s"], data["idle_health_ms"]),
        (f"after {BOMBS} bombs", data["attacked_latency_s"], data["attacked_health_ms"]),
    ):
        p50, p99 = percentile(health, 50), percentile(health, 99)
        rows.append([label, phase, round(latency, 2), len(health), round(p50, 1), round(p99, 1)])
    codes = ", ".join(f"{n} x {code}" for code, n in sorted(data["bomb_codes"].items()))
    rows[-1].append(f"{codes} in {data['firing_s']:.1f} s; queue drained {data['drain_s']:.0f} s later")
    rows[0].append("")
    return rows


def run(ctx: Context, result: Result) -> None:
    silence_s = 120 if ctx.quick else 300
    bank = SpeechBank(ctx.cache)
    (voicemail,) = voicemail_mix(bank, [10], "hostile-voicemail")
    bomb = _bomb(bank, ctx.cache, silence_s)
    baseline_src = os.environ.get("HOSTILE_BASELINE_SRC")
    result.description = (
        f"{BOMBS} bombs submitted at once ({bomb.stat().st_size / 1000:.0f} KB FLAC each: 7 s of speech, then "
        f"{silence_s / 60:g} minutes of digital silence), then a legitimate 10 s voicemail: its latency from "
        "submission to transcript, and /health polled every 50 ms meanwhile, against the idle server's figures"
        + (" (and against a baseline checkout, from `HOSTILE_BASELINE_SRC`)" if baseline_src else "")
        + f". Then {POLL_CONNECTIONS} keep-alive connections poll a job's status for {POLL_SECONDS:g} s, "
        f"{ROUNDS} rounds alternating between the server as it runs (uvicorn's h11 with the limits of "
        "`api/http_limits.py`) and uvicorn's defaults (httptools, no limits); the median round is shown."
    )
    env = {"MAX_QUEUE_SIZE": "500"}
    attacks: dict[str, dict[str, Any]] = {}
    if baseline_src:
        with serve(ctx.model, env | {"PYTHONPATH": baseline_src}, warm_up=voicemail.path) as server:
            attacks["FIFO queue (before part 2)"] = _attack(server, voicemail.path, bomb)
    with serve(ctx.model, env, warm_up=voicemail.path) as server:
        attacks["now"] = _attack(server, voicemail.path, bomb)

    variants = {
        "h11 + limits (as shipped)": "wazo_stt",
        "httptools, no limits (uvicorn defaults)": "bench.uvicorn_defaults",
    }
    polls: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in variants}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                serve(ctx.model, env | {"PYTHONPATH": str(REPO_ROOT)}, warm_up=voicemail.path, module=module)
            )
            for name, module in variants.items()
        }
        jobs = {name: server.transcribe(voicemail.path).job_id for name, server in servers.items()}
        for _ in range(ROUNDS):
            for name, server in servers.items():
                polls[name].append(_poll_throughput(server, jobs[name]))
    throughput_rows = []
    for name, rounds in polls.items():
        rate, latencies = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
        throughput_rows.append(
            [
                name,
                round(rate),
                ", ".join(str(round(r)) for r, _ in rounds),
                round(percentile(latencies, 50), 2),
                round(percentile(latencies, 99), 2),
            ]
        )

    result.tables.append(
        Table(
            "A 10 s voicemail and /health under a starvation attack",
            ["code", "server", "voicemail latency s", "/health n", "/health p50 ms", "/health p99 ms", "bombs"],
            [row for label, data in attacks.items() for row in _attack_rows(label, data)],
        )
    )
    result.tables.append(
        Table(
            f"Status polls, {POLL_CONNECTIONS} keep-alive connections",
            ["HTTP server", "requests/s (median)", "each round", "p50 ms", "p99 ms"],
            throughput_rows,
        )
    )
    now = attacks["now"]
    ratio = now["attacked_latency_s"] / now["idle_latency_s"]
    health_ratio = percentile(now["attacked_health_ms"], 50) / percentile(now["idle_health_ms"], 50)
    result.goals += [
        Goal("voicemail latency under attack / idle", "<= 2x", f"{ratio:.1f}x", ratio <= 2),
        Goal("/health p50 under attack / idle", "<= 2x", f"{health_ratio:.1f}x", health_ratio <= 2),
    ]
    result.settings = {"bombs": BOMBS, "bomb_bytes": bomb.stat().st_size, "silence_s": silence_s, "rounds": ROUNDS}
    result.data = {"attacks": attacks, "throughput": throughput_rows}
