"""How the server uses the C heap: few malloc arenas, and the free pages given back once the models are loaded.

Arenas: glibc gives each thread that finds the heap busy an arena of its own, up to 8 per core. A server's
threads (HTTP, upload checks, decoders, two jobs' inferences, SQLite) each spread their buffers over their own
arena, and every arena keeps its freed memory: on 2 vCPUs the 30-voicemail burst ended 100-160 MB higher with
the default than with two arenas, at the same speed (docs/benchmarks.md, issue 18, "Fifth pass"). The cap is
set before the server starts its threads; ``MALLOC_ARENA_MAX`` in the environment, glibc's own knob, wins.

Free pages: ONNX Runtime reads each model into buffers it frees once the session is built, but glibc keeps that
memory in its heap: after loading Parakeet 0.6B int8 the process held 980 MB, sometimes 1 230 MB, of which
230-480 MB were free heap. ``malloc_trim`` returns it (752 MB every time, measured in docs/benchmarks.md).

Elsewhere (musl, macOS) there is nothing to call, and nothing is lost.
"""

from __future__ import annotations

import ctypes
import os

HEAP_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def cap_heap_arenas(arenas: int = HEAP_ARENAS) -> bool:
    """At most ``arenas`` malloc arenas, unless ``MALLOC_ARENA_MAX`` says otherwise; True when set here."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def release_freed_memory() -> None:
    """``malloc_trim(0)`` where the C library has it (looked up among the symbols already loaded)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)
