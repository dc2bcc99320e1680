"""The server tunes glibc's heap (wazo_stt/heap.py): threads share two arenas, and big buffers keep mappings of
their own instead of leaving holes in the heap.

Each case runs in a fresh interpreter, since the settings only affect what is allocated afterwards: eight threads
allocate at once, then glibc's own ``malloc_info`` report counts the heaps; a 1 MB block is freed and asked for
again, then ``mallinfo2`` says whether the second one is a mapping of its own.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from wazo_stt.heap import HEAP_ARENAS

pytestmark = pytest.mark.skipif(
    getattr(ctypes.CDLL(None), "mallinfo2", None) is None, reason="not glibc 2.33 or later: nothing to tune"
)

PROBE = """
import ctypes, json, sys, tempfile, threading
from wazo_stt.heap import tune_heap
tuned = tune_heap() if sys.argv[1] == "tune" else None
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
    heaps = report.read().count("<heap nr=")

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc.mallinfo2.restype = Mallinfo2
libc.free(libc.malloc(1 << 20))  # glibc's own rule raises its threshold past 1 MB here
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
mapped = libc.mallinfo2().hblks - before  # 1: the block has a mapping of its own; 0: it came from the heap
libc.free(block)
print(json.dumps({"tuned": tuned, "heaps": heaps, "mapped": mapped}))
"""


def _probe(mode: str, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=environment, check=True
    )
    return json.loads(done.stdout)


def test_threads_share_two_arenas_and_big_buffers_stay_mapped():
    tuned = _probe("tune")
    assert tuned == {"tuned": ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"], "heaps": HEAP_ARENAS, "mapped": 1}
    # Untuned, the same threads take more arenas and the second 1 MB block comes from the heap.
    plain = _probe("plain")
    assert plain["heaps"] > HEAP_ARENAS and plain["mapped"] == 0


def test_glibcs_own_variables_leave_the_heap_to_the_environment():
    # One of them set: the server sets neither, and glibc's own threshold rule stands.
    assert _probe("tune", MALLOC_ARENA_MAX="3") == {"tuned": [], "heaps": 3, "mapped": 0}


def test_the_server_tunes_the_heap_before_it_starts(monkeypatch):
    from wazo_stt import cli

    calls = []
    monkeypatch.setattr("wazo_stt.heap.tune_heap", lambda: calls.append("tune"))
    monkeypatch.setattr("wazo_stt.api.serve.serve", lambda *a, **k: calls.append("serve") or 0)
    assert cli.main(["serve"]) == 0
    assert calls == ["tune", "serve"]
