"""Idempotency over real HTTP: one voicemail, ``(user_uuid, message_id)``, is one job however many times and
however concurrently it is sent; and ``force=true`` has one defined outcome against a job already running.

The rule for ``force`` (API.md, docs/reliability.md): a job of the pair that is still queued or processing is
returned as it is, not duplicated, since it will produce a fresh transcript anyway; only a finished job (completed
or failed) is replaced by a new one. Concurrent forces on a finished job replace it once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.gate import Gate
from tests.support.jobs import TEXT, TRANSCRIPTIONS, status, voicemail, wait_until
from tests.support.server import running_server, wait_ready

AUDIO = voicemail(3.0)


def post(url: str, **fields: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.post(TRANSCRIPTIONS, files={"file": ("vm.wav", AUDIO)}, data={"user_uuid": "u", **fields})


def concurrently(url: str, n: int, **fields: str) -> list[httpx.Response]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: post(url, **fields), range(n)))


def test_twenty_concurrent_submissions_of_one_voicemail_make_one_job(settings):
    gate = Gate()
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_ready(client)
        responses = concurrently(url, 20, message_id="vm-1")
        assert {r.status_code for r in responses} == {200}
        bodies = [r.json() for r in responses]
        job_ids = {b["job_id"] for b in bodies}
        assert len(job_ids) == 1
        assert {r.headers["x-job-id"] for r in responses} == job_ids
        assert sum(not b["cached"] for b in bodies) == 1  # one created it; the 19 others were given it
        assert client.get("/health").json()["db_stats"]["total"] == 1
        gate.release.release()
        (job_id,) = job_ids
        wait_until(lambda: status(client, job_id) == "completed")
        assert client.get(f"{TRANSCRIPTIONS}/{job_id}").json()["text"] == TEXT


def test_force_racing_a_running_job_returns_that_job_and_queues_nothing(settings):
    gate = Gate()
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_ready(client)
        first = post(url, message_id="vm-2").json()["job_id"]
        wait_until(lambda: status(client, first) == "processing")

        forced = concurrently(url, 10, message_id="vm-2", force="true")
        for response in forced:
            body = response.json()
            assert response.status_code == 200
            assert body["job_id"] == first and body["status"] == "processing"
            assert body["cached"] is False and body["message"] == "Job already processing; it is not queued twice"
        assert client.get("/health").json()["db_stats"]["total"] == 1

        gate.release.release()
        wait_until(lambda: status(client, first) == "completed")
        # Finished now: ten concurrent forces replace it exactly once.
        for _ in range(10):
            gate.release.release()
        again = concurrently(url, 10, message_id="vm-2", force="true")
        new_ids = {r.json()["job_id"] for r in again}
        assert len(new_ids) == 1 and first not in new_ids
        assert client.get(f"{TRANSCRIPTIONS}/{first}").status_code == 404
        (second,) = new_ids
        wait_until(lambda: status(client, second) == "completed")
        assert client.get("/health").json()["db_stats"] == {"total": 1, "completed": 1, "failed": 0, "pending": 0}
