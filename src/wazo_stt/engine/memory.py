"""Give the C heap's free pages back to the system once the models are loaded.

ONNX Runtime reads each model into buffers it frees once the session is built, but glibc keeps that memory in
its heap: after loading Parakeet 0.6B int8 the process held 980 MB, sometimes 1 230 MB, of which 230-480 MB
were free heap. ``malloc_trim`` returns it (752 MB every time, measured in docs/benchmarks.md). Elsewhere
(musl, macOS) there is nothing to call, and nothing is lost.
"""

from __future__ import annotations

import ctypes


def release_freed_memory() -> None:
    """``malloc_trim(0)`` where the C library has it (looked up among the symbols already loaded)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)
