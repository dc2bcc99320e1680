"""How the engines use the cores: ONNX Runtime session options shared by every model (Parakeet, Silero VAD),
and NumPy's BLAS kept to one thread."""

from __future__ import annotations

import onnxruntime as ort
from threadpoolctl import threadpool_limits


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


def one_blas_thread() -> None:
    """NumPy's OpenBLAS runs on one thread in this process.

    The engines' own NumPy work is small matrix products (each chunk's mel filterbank, before ONNX Runtime or
    CTranslate2 takes over), too small to share between threads. But after each one OpenBLAS's second thread
    keeps spinning for its wake-up timeout, on a core ONNX Runtime wants: in a burst of 30 voicemails on 2 vCPUs
    that thread alone burnt 3.7 CPU-s of 74 in-process (docs/benchmarks.md, issue 18, "Fourth pass").
    threadpoolctl finds the BLAS NumPy loaded, whichever it is, and leaves other libraries alone.
    """
    threadpool_limits(limits=1, user_api="blas")
