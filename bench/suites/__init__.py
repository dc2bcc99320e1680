"""The benchmarks, one module each; ``bench.run`` runs them in this order."""

from __future__ import annotations

from bench.suites import hostile, latency, overhead, responsiveness, scaling, throughput, tuning

BENCHMARKS = {
    "overhead": overhead.run,
    "responsiveness": responsiveness.run,
    "latency": latency.run,
    "throughput": throughput.run,
    "scaling": scaling.run,
    "tuning": tuning.run,
    "hostile": hostile.run,
}
