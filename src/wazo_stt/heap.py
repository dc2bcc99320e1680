"""How the server uses the C heap: few malloc arenas, big buffers in mappings of their own, and the free pages
given back once the models are loaded.

Arenas: glibc gives each thread that finds the heap busy an arena of its own, up to 8 per core. A server's
threads (HTTP, upload checks, decoders, two jobs' inferences, SQLite) each spread their buffers over their own
arena, and every arena keeps its freed memory: on 2 vCPUs the 30-voicemail burst ended 100-160 MB higher with
the default than with two arenas, at the same speed.

Big buffers: glibc maps a block of 128 KB or more on its own and unmaps it when freed, but each such free raises
that threshold to the block's size (up to 32 MB), after which decoded audio, upload bodies and NumPy arrays come
from the heap, where their holes stay resident. A fixed 256 KB threshold keeps them mapped: the same burst, five
rounds each, peaked at 1178 MB (median) against 1286 MB, at the same speed (docs/benchmarks.md, issue 18,
"Float convolutions").

Both are set before the server starts its threads, unless ``MALLOC_ARENA_MAX`` or ``MALLOC_MMAP_THRESHOLD_``,
glibc's own knobs, are in the environment: then it is managed there.

Free pages: ONNX Runtime reads each model into buffers it frees once the session is built, but glibc keeps that
memory in its heap: after loading Parakeet 0.6B int8 the process held 980 MB, sometimes 1 230 MB, of which
230-480 MB were free heap. ``malloc_trim`` returns it (752 MB every time, measured in docs/benchmarks.md).

Elsewhere (musl, macOS) there is nothing to call, and nothing is lost.
"""

from __future__ import annotations

import ctypes
import os

HEAP_ARENAS = 2
MMAP_THRESHOLD = 256 * 1024
# mallopt's parameter numbers in glibc's malloc.h, and the environment variables that set the same.
_SETTINGS = {"MALLOC_ARENA_MAX": (-8, HEAP_ARENAS), "MALLOC_MMAP_THRESHOLD_": (-3, MMAP_THRESHOLD)}


def tune_heap() -> list[str]:
    """Two arenas and a fixed mapping threshold; returns what was set. Where the environment sets either of
    glibc's variables, the operator manages the heap and nothing is set here."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None or any(name in os.environ for name in _SETTINGS):
        return []
    return [name for name, (parameter, value) in _SETTINGS.items() if mallopt(parameter, value) == 1]


def release_freed_memory() -> None:
    """``malloc_trim(0)`` where the C library has it (looked up among the symbols already loaded)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)
