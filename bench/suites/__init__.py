"""The benchmarks, one module each; ``bench.run`` runs them in this order."""

from __future__ import annotations

from bench.suites import (
    batching,
    burst,
    float_convs,
    hostile,
    latency,
    overhead,
    pipeline,
    responsiveness,
    runtimes,
    scaling,
    speech,
    throughput,
    tuning,
    whisper_servers,
    whisper_short,
)

BENCHMARKS = {
    "overhead": overhead.run,
    "responsiveness": responsiveness.run,
    "latency": latency.run,
    "throughput": throughput.run,
    "scaling": scaling.run,
    "tuning": tuning.run,
    "runtimes": runtimes.run,
    "hostile": hostile.run,
    "speech": speech.run,
    "batching": batching.run,
    "pipeline": pipeline.run,
    "burst": burst.run,
    "float_convs": float_convs.run,
    "whisper_short": whisper_short.run,
    "whisper_servers": whisper_servers.run,
}
