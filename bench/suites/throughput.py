"""Throughput under load: 50 voicemails submitted at once; how long until the queue is drained?

All 50 POSTs are sent concurrently (50 client threads), as a burst of voicemails after a busy hour would be.
The server decodes each upload at submission while the worker is already transcribing the first ones, so this
also measures how submission and inference share the two cores. The server's memory is sampled meanwhile and
its kernel peak (VmHWM) is reset after model loading, so the peak belongs to the burst.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench.audio import SpeechBank, voicemail_durations, voicemail_mix
from bench.common import Context, Result, Table, log, mb
from bench.server import serve
from wazo_stt.config import Settings

COUNT = 50
STATUS_POLL = 0.1


def run(ctx: Context, result: Result) -> None:
    durations = voicemail_durations(COUNT, seed=5, high=20.0 if ctx.quick else 120.0)
    bank = SpeechBank(ctx.cache)
    files = voicemail_mix(bank, durations, "burst")
    audio_total = sum(f.duration for f in files)
    result.description = (
        f"{COUNT} voicemails ({min(durations):g}-{max(durations):g} s, median {sorted(durations)[COUNT // 2]:g} s, "
        f"{audio_total:.0f} s in all; WAV, u-law WAV and MP3) POSTed at once by {COUNT} client threads "
        "(asynchronous mode); drained when every job is completed."
    )
    (warm,) = voicemail_mix(bank, [10], "warm")
    # The shipped default (auto: two jobs at once from two cores) against one job at a time, and two jobs at once
    # on one ONNX Runtime thread each (what the tuning table compares for a burst).
    default_workers = Settings(_env_file=None).workers
    configs = [
        (f"WORKERS={default_workers} (default)", {"WORKERS": str(default_workers)}),
        ("WORKERS=1", {"WORKERS": "1"}),
    ]
    configs.append(("WORKERS=2, INTRA_OP_THREADS=1", {"WORKERS": "2", "INTRA_OP_THREADS": "1"}))
    if ctx.quick:
        configs = [c for c in configs if "(default)" in c[0]]
    rows = []
    for label, env in configs:
        with serve(ctx.model, env, warm_up=warm.path) as server:
            rss_idle = server.memory()["rss"]
            peak_reset = server.reset_peak()
            log(f"throughput ({label}): submitting {COUNT} files")
            with server.sample_rss() as samples:
                start = time.perf_counter()
                with ThreadPoolExecutor(COUNT) as pool:
                    submitted = list(pool.map(lambda f: server.submit(f.path)[0].json()["job_id"], files))
                all_accepted = time.perf_counter() - start
                while True:
                    status = server.client.get("/v1/audio/transcriptions/status").json()
                    if status["queue_length"] == 0 and not status["processing"]:
                        break
                    time.sleep(STATUS_POLL)
                drain = time.perf_counter() - start
            statuses = [server.client.get(f"/v1/audio/transcriptions/{j}").json()["status"] for j in submitted]
            memory = server.memory()
            threads = server.threads()
            settings = {
                k: server.env.get(k, "(default)")
                for k in ("WORKERS", "INTRA_OP_THREADS", "ENABLE_VAD", "CHUNK_MAX_SECS")
            }
        peak = max(memory["hwm"] if peak_reset else 0, max((s[1] for s in samples), default=0))
        completed = statuses.count("completed")
        rows.append(
            [
                label,
                f"{completed}/{COUNT}",
                round(all_accepted, 2),
                round(drain, 1),
                round(audio_total / drain, 2),
                round(mb(rss_idle)),
                round(mb(peak)),
                threads,
            ]
        )
        result.data[label] = {
            "accepted_all_s": all_accepted,
            "drain_s": drain,
            "audio_seconds": audio_total,
            "statuses": statuses,
            "rss_idle": rss_idle,
            "peak_rss": peak,
            "peak_from_vmhwm": peak_reset,
            "rss_samples": samples,
            "threads": threads,
            "settings": settings,
        }
    result.tables.append(
        Table(
            f"{COUNT} voicemails at once",
            [
                "config",
                "completed",
                "all accepted s",
                "drained s",
                "audio s / wall s",
                "RSS idle MB",
                "peak RSS MB",
                "threads",
            ],
            rows,
            note="WORKERS: jobs transcribed at once; INTRA_OP_THREADS=0: ONNX Runtime's threads per inference, one "
            "per core; `threads` is the server process's OS thread count at the end (uvicorn, thread pools, "
            "ONNX Runtime).",
        )
    )
    result.settings = {"count": COUNT, "durations": durations, "configs": dict(configs)}
