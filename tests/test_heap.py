"""The server caps glibc's malloc arenas (wazo_stt/heap.py): threads share two heaps instead of one each.

Each case runs in a fresh interpreter, since the cap only affects arenas not yet made: eight threads allocate at
once, then glibc's own ``malloc_info`` report counts the heaps.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from wazo_stt.heap import HEAP_ARENAS

pytestmark = pytest.mark.skipif(
    getattr(ctypes.CDLL(None), "malloc_info", None) is None, reason="not glibc: no arenas to cap"
)

COUNT_HEAPS = """
import ctypes, sys, tempfile, threading
from wazo_stt.heap import cap_heap_arenas
print(cap_heap_arenas() if sys.argv[1] == "cap" else None)
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
together = threading.Barrier(8)
def allocate():
    together.wait()
    blocks = [libc.malloc(1000) for _ in range(1000)]
    together.wait()
    for block in blocks:
        libc.free(block)
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes, libc.malloc_info.argtypes = [ctypes.c_void_p], [ctypes.c_int, ctypes.c_void_p]
with tempfile.NamedTemporaryFile("r") as report:
    out = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(report.read().count("<heap nr="))
"""


def _heaps(mode: str, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", COUNT_HEAPS, mode], capture_output=True, text=True, env=environment, check=True
    )
    capped, heaps = done.stdout.split()
    return capped, int(heaps)


def test_threads_share_the_capped_arenas():
    assert _heaps("cap") == ("True", HEAP_ARENAS)
    # Without the cap, the same threads take more: what the cap is there to prevent.
    assert _heaps("none")[1] > HEAP_ARENAS


def test_malloc_arena_max_in_the_environment_wins():
    assert _heaps("cap", MALLOC_ARENA_MAX="3") == ("False", 3)


def test_the_server_caps_them_before_it_starts(monkeypatch):
    from wazo_stt import cli

    calls = []
    monkeypatch.setattr("wazo_stt.heap.cap_heap_arenas", lambda: calls.append("cap"))
    monkeypatch.setattr("wazo_stt.api.serve.serve", lambda *a, **k: calls.append("serve") or 0)
    assert cli.main(["serve"]) == 0
    assert calls == ["cap", "serve"]
