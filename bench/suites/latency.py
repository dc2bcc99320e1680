"""Latency: how long does a caller wait for a 10-second voicemail, from submission to the finished transcript?

Measured both ways clients use the server, on an otherwise idle, warmed-up server:

- synchronous (OpenAI clients): one POST that answers with the transcript; exact end-to-end latency;
- asynchronous (telephony clients): POST, then poll the job every 10 ms until it is completed (the real plug-in
  polls every 1-2 s, which would measure its own poll interval rather than the server).
"""

from __future__ import annotations

from bench.audio import SpeechBank
from bench.common import Context, Goal, Result, Table, log, percentile
from bench.server import serve

RUNS = 20
QUICK_RUNS = 10
POLL_EVERY = 0.01
GOAL_P50_S = 1.0


def run(ctx: Context, result: Result) -> None:
    runs = QUICK_RUNS if ctx.quick else RUNS
    result.description = (
        f"A 10 s voicemail (8 kHz WAV, about 7 s of speech), submitted {runs} times one after the other; "
        "wall time from the POST to the finished transcript, as the client sees it."
    )
    bank = SpeechBank(ctx.cache)
    voicemail = bank.recording("latency-10s", 10.0, "wav", seed=42)
    sync: list[float] = []
    poll: list[float] = []
    with serve(ctx.model, warm_up=voicemail.path) as server:
        log(f"latency: {runs} synchronous and {runs} asynchronous runs")
        for _ in range(runs):
            timing = server.transcribe_sync(voicemail.path)
            sync.append(timing.completed - timing.submitted)
            timing = server.transcribe(voicemail.path, poll_every=POLL_EVERY)
            if timing.status != "completed":
                raise RuntimeError(f"latency job {timing.status}")
            poll.append(timing.completed - timing.submitted)
    rows = [
        [
            label,
            len(values),
            round(percentile(values, 50), 3),
            round(percentile(values, 90), 3),
            round(min(values), 3),
            round(max(values), 3),
        ]
        for label, values in (
            ("synchronous POST (OpenAI client)", sync),
            ("POST + poll every 10 ms (telephony client)", poll),
        )
    ]
    result.tables.append(
        Table(
            "10 s voicemail, submit to completed (seconds)", ["mode", "runs", "p50 s", "p90 s", "min s", "max s"], rows
        )
    )
    p50 = percentile(sync, 50)
    result.goals.append(Goal("p50 latency, synchronous", f"<= {GOAL_P50_S:g} s", f"{p50:.3f} s", p50 <= GOAL_P50_S))
    p50_poll = percentile(poll, 50)
    result.goals.append(
        Goal("p50 latency, submit + poll", f"<= {GOAL_P50_S:g} s", f"{p50_poll:.3f} s", p50_poll <= GOAL_P50_S)
    )
    result.settings = {"runs": runs, "audio_seconds": voicemail.duration, "speech_seconds": voicemail.speech_seconds}
    result.data = {"sync_s": sync, "poll_s": poll}
