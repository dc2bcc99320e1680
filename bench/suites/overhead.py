"""Server overhead: the same voicemails through the engine in-process and through the running server.

Three paths over the same files, one after the other (the server sits idle while the in-process ones run):

- ``onnx-asr``: plain ``onnx_asr ... .recognize`` on each whole file (all are at most 120 s, one encoder call);
- ``engine``: our ``ChunkedEngine`` in-process (VAD, 20 s chunks, words and segments), what the server calls;
- ``server``: ``wazo-stt serve`` over HTTP, the telephony client's way: POST, then poll the job every 20 ms;
- ``server-sync``: the same server, the OpenAI client's way: one POST that answers with the transcript.

The two server rows tell the server's own cost from the client's: polling 50 times a second costs CPU (about
1.4 ms of the server's per poll) on the cores inference uses, and a job's end is seen only at the next poll.

Timed per file, decoding included everywhere (the server decodes twice: to validate at submission, then in the
worker). The rounds alternate the order of the paths so that a drift in the machine's load favours none.
"""

from __future__ import annotations

import json

from bench.audio import SpeechBank, voicemail_mix
from bench.common import Context, Goal, Result, Table, log, run_json_subprocess
from bench.server import serve

FULL_DURATIONS = [5, 8, 12, 20, 30, 45, 60, 90, 120]
QUICK_DURATIONS = [5, 8, 12, 20, 30]
POLL_EVERY = 0.02
GOAL_RATIO = 0.97


def run(ctx: Context, result: Result) -> None:
    result.description = (
        "Voicemails (5-120 s, 8 kHz WAV, G.711 u-law WAV and MP3) through plain onnx-asr, through our engine "
        "in-process, and through the running server (HTTP submit + poll every 20 ms, and synchronous POST). Audio "
        "seconds per wall "
        "second over the whole set, decoding included."
    )
    bank = SpeechBank(ctx.cache)
    files = voicemail_mix(bank, QUICK_DURATIONS if ctx.quick else FULL_DURATIONS, "overhead")
    rounds = 1 if ctx.quick else 2
    result.settings = {"files": [f.path.name for f in files], "rounds": rounds, "poll_every_s": POLL_EVERY}
    paths = ("onnx-asr", "engine", "server", "server-sync")
    totals: dict[str, dict[str, float]] = {p: {"audio": 0.0, "wall": 0.0} for p in paths}
    per_file: dict[str, list[dict]] = {p: [] for p in totals}
    audio_total = sum(f.duration for f in files)

    with serve(ctx.model, warm_up=files[0].path) as server:
        result.settings["server_env"] = {k: v for k, v in server.env.items() if k not in ("DB_PATH", "PORT")}
        for round_no in range(rounds):
            order = list(paths)
            if round_no % 2:
                order.reverse()
            for path in order:
                log(f"overhead round {round_no + 1}/{rounds}: {path}")
                if path.startswith("server"):
                    items = []
                    for f in files:
                        if path == "server":
                            timing = server.transcribe(f.path, poll_every=POLL_EVERY)
                        else:
                            timing = server.transcribe_sync(f.path)
                        if timing.status != "completed":
                            raise RuntimeError(f"server job for {f.path.name} {timing.status}")
                        items.append(
                            {
                                "name": f.path.name,
                                "audio_seconds": f.duration,
                                "wall": timing.completed - timing.submitted,
                            }
                        )
                else:
                    spec = {
                        "runner": "onnx-asr" if path == "onnx-asr" else "chunked",
                        "model": str(ctx.model),
                        "files": [str(f.path) for f in files],
                    }
                    items = run_json_subprocess([ctx.python, "-m", "bench.case", json.dumps(spec)], timeout=1800)[
                        "items"
                    ]
                totals[path]["audio"] += sum(i["audio_seconds"] for i in items)
                totals[path]["wall"] += sum(i["wall"] for i in items)
                per_file[path].extend({**i, "round": round_no + 1} for i in items)

    speed = {p: t["audio"] / t["wall"] for p, t in totals.items()}
    rows = [
        [
            label,
            round(totals[p]["audio"] / rounds, 1),
            round(totals[p]["wall"] / rounds, 2),
            round(speed[p], 2),
            round(speed[p] / speed["engine"], 3),
        ]
        for p, label in (
            ("onnx-asr", "plain onnx-asr, whole file, in-process"),
            ("engine", "our ChunkedEngine (VAD, 20 s chunks), in-process"),
            ("server", "wazo-stt serve, HTTP submit + poll every 20 ms"),
            ("server-sync", "wazo-stt serve, synchronous POST"),
        )
    ]
    result.tables.append(
        Table(
            "Server overhead (per round)",
            ["path", "audio s", "wall s", "audio s / wall s", "vs our engine in-process"],
            rows,
            note=f"{len(files)} files, {audio_total:.0f} s of audio; {rounds} round(s), order alternated.",
        )
    )
    for server_path, how in (("server", "submit + poll"), ("server-sync", "synchronous")):
        for engine_path, what in (("onnx-asr", "plain onnx-asr"), ("engine", "our engine")):
            ratio = speed[server_path] / speed[engine_path]
            result.goals.append(
                Goal(
                    f"server ({how}) vs {what} in-process", f">= {GOAL_RATIO} x", f"{ratio:.3f} x", ratio >= GOAL_RATIO
                )
            )
    result.data = {"totals": totals, "speed": speed, "per_file": per_file}
