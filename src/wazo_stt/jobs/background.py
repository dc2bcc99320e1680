"""Background threads for the heavy work (model loading, decoding, inference): daemon threads at a lower priority.

Daemon, so that a stopping server is never held by a long transcription (Python joins executor threads at exit).
Lower priority, so that the HTTP event loop gets a core as soon as a request arrives: with two jobs at once on 2
vCPUs, status polls answered in 10 ms at the median instead of 23 ms (docs/benchmarks.md, "responsiveness").
The model is loaded in such a thread too: the threads ONNX Runtime starts for a model's inference inherit the
niceness of the thread that loads it, so every thread of an inference runs at the same priority (one thread of
an inference slowed against another would stall the whole inference).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How much nicer than the process a background thread runs (Linux: niceness is per thread, inherited by the
# threads it starts).
BACKGROUND_NICENESS = 10


def in_background_thread(function: Callable[..., T], *args: object, name: str) -> asyncio.Future[T]:
    """Run ``function`` in a thread of its own and return a future of its result.

    ``name`` names the thread (seen in py-spy, gdb and /proc); the thread runs at the lower priority.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()  # the job's id tags the lines the engine logs in that thread

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        _lower_priority()
        try:
            result, error = context.run(function, *args), None
        except Exception as exc:
            result, error = None, exc
        except BaseException as exc:  # SystemExit and the like must not escape into the event loop
            result, error = None, RuntimeError(f"the background thread was interrupted: {exc!r}")
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped without this job
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def _lower_priority() -> None:
    """Make the calling thread (only) yield its core to the HTTP event loop: Linux has a niceness per thread.
    Elsewhere ``setpriority`` on a thread id would renice the whole process, or fail: nothing is done there."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            thread = threading.get_native_id()
            niceness = os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICENESS
            os.setpriority(os.PRIO_PROCESS, thread, min(niceness, 19))
