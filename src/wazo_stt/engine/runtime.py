"""ONNX Runtime session options shared by every model the engine runs (Parakeet, Silero VAD)."""

from __future__ import annotations

import onnxruntime as ort


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """ONNX Runtime's defaults, but idle threads sleep instead of spinning.

    A spinning thread burns its core between operators; in a server that core is also wanted by HTTP requests,
    SQLite and the next job's decoding, and every preemption of one inference thread stalls the others.
    Measured on 2 vCPUs (docs/benchmarks.md): alone, the same speed with 6% less CPU; in the server, 7% more
    audio per second and a 5% lower voicemail latency.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
