"""What a request holds while it waits, and where its heavy work runs.

A synchronous request may wait up to SYNC_TIMEOUT_SECS for its job: it must not hold its upload (up to
MAX_UPLOAD_MB in memory, and the form's temporary file) meanwhile. Rendering a long transcript takes a quarter of a
second: it must not run on the event loop, where every status poll would wait for it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading

import httpx
import numpy as np

from tests.support.audio_fixtures import wav_bytes
from tests.support.gate import Gate
from tests.support.jobs import TRANSCRIPTIONS, wait_until
from tests.support.server import running_server, wait_ready
from tests.support.tiny_parakeet import render
from wazo_stt.api.routes import transcriptions
from wazo_stt.jobs.store import JobStore

# 70 s of 16 kHz 16-bit audio: 2.2 MB, past the 1 MB a form keeps in memory before spooling to a temporary file.
BIG = wav_bytes(render([("▁hello", 1.0)], duration=70.0), 16000)


def _deleted_files() -> set[str]:
    """Open descriptors of this process on unlinked files: spooled form uploads are such temporary files."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith("(deleted)"):
            found.add(f"{fd}:{target}")
    return found


def test_a_waiting_request_holds_neither_its_upload_nor_its_temporary_file(settings, monkeypatch):
    uploads: list[bytes] = []
    real_submit = JobStore.submit

    async def submit(self, new, **kwargs):
        uploads.append(new.audio)
        return await real_submit(self, new, **kwargs)

    monkeypatch.setattr(JobStore, "submit", submit)
    gate = Gate()
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(client)
        before = _deleted_files()
        answer: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answer.append(client.post(TRANSCRIPTIONS, files={"file": ("big.wav", BIG)}))
        )
        request.start()
        wait_until(lambda: client.get("/health").json()["db_stats"]["pending"] == 1, what="the job to be queued")
        try:
            # The request now waits for its job (the gate holds the engine).
            wait_until(lambda: not (_deleted_files() - before), timeout=5, what="the form's temporary file to close")
            gc.collect()
            holders = [r for r in gc.get_referrers(uploads[0]) if r is not uploads]
            assert holders == [], [type(h).__name__ for h in holders]
        finally:
            gate.release.release()
            request.join(timeout=30)
        assert answer[0].status_code == 200 and answer[0].json()["text"] == "hello"


def test_rendering_runs_off_the_event_loop(client, monkeypatch):
    on_loop: list[bool] = []
    real_render = transcriptions.render

    def spy(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real_render(*args, **kwargs)

    monkeypatch.setattr(transcriptions, "render", spy)
    audio = wav_bytes(np.zeros(16000, dtype=np.float32), 16000)
    response = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", audio)}, data={"response_format": "srt"})
    assert response.status_code == 200
    job_id = response.headers["x-job-id"]
    assert client.get(f"{TRANSCRIPTIONS}/{job_id}/result", params={"response_format": "verbose_json"}).is_success
    assert on_loop == [False, False]
