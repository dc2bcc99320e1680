"""Load: 500 submissions, 50 at a time, against a queue of 10.

Every request must get a 2xx, or a 429 with Retry-After when the queue is full (never a 5xx, a reset or a hang);
every accepted job must complete; and the SQLite file must come out consistent, its counts matching what the
clients were told. The server is a process of its own, so that the load generator does not share its GIL.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.support.jobs import TEXT, TRANSCRIPTIONS, voicemail, wait_until
from tests.support.processes import db_rows, server_env, server_process

SUBMISSIONS = 500
CONCURRENCY = 50
QUEUE = 10
AUDIO = voicemail(3.0)


async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, i: int) -> tuple[int, httpx.Response]:
    """Even: an OpenAI-style synchronous request; odd: a telephony submission with its own identity."""
    data = {} if i % 2 == 0 else {"user_uuid": "load", "message_id": f"vm-{i}"}
    async with gate:
        return i, await client.post(TRANSCRIPTIONS, files={"file": ("vm.wav", AUDIO)}, data=data)


async def storm(url: str) -> list[tuple[int, httpx.Response]]:
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        return await asyncio.gather(*(one(client, gate, i) for i in range(SUBMISSIONS)))


@pytest.mark.slow
def test_500_submissions_at_concurrency_50_against_a_queue_of_10(tmp_path, tiny_model_dir):
    db = tmp_path / "data" / "jobs.db"
    env = server_env(tiny_model_dir, db, max_queue_size=QUEUE, log_level="warning")
    with (
        server_process(env, tmp_path / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        server.start()
        results = asyncio.run(storm(server.url))

        codes = Counter(r.status_code for _, r in results)
        print(f"responses: {dict(codes)}")
        assert set(codes) <= {200, 429}, codes
        assert codes[200] > QUEUE and codes[429] > 0, codes  # both paths exercised
        for _, response in results:
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) > 0
                assert response.json()["error"]["code"] == "queue_full"

        accepted: dict[str, int] = {}
        for i, response in results:
            if response.status_code != 200:
                continue
            job_id = response.headers["x-job-id"]
            accepted[job_id] = i
            if i % 2 == 0:
                assert response.json()["text"] == TEXT  # the synchronous ones waited for their transcript
            else:
                assert response.json()["job_id"] == job_id
        assert len(accepted) == codes[200]  # one job per accepted request, none shared

        wait_until(lambda: client.get("/health").json()["db_stats"]["pending"] == 0, timeout=120)
        health = client.get("/health").json()["db_stats"]
        assert health == {"total": len(accepted), "completed": len(accepted), "failed": 0, "pending": 0}
        assert server.process is not None and server.process.poll() is None

    # The file itself, once the server is gone.
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert db_rows(db, "PRAGMA journal_mode") == [("wal",)]
    assert {row[0] for row in db_rows(db, "SELECT id FROM jobs WHERE status = 'completed'")} == set(accepted)
    assert db_rows(db, "SELECT COUNT(*) FROM jobs WHERE attempts != 1") == [(0,)]
    assert db_rows(db, "SELECT COUNT(*) FROM job_audio") == [(0,)]
    assert max_queued(db_rows(db, "SELECT created_at, started_at FROM jobs")) <= QUEUE
    identities = db_rows(db, "SELECT message_id FROM jobs WHERE user_uuid = 'load'")
    assert sorted(m for (m,) in identities) == sorted(f"vm-{i}" for i in accepted.values() if i % 2)


def max_queued(spans: list[tuple[float, float]]) -> int:
    """The most jobs queued at once, from when each was queued and taken (a check-then-insert race shows)."""
    events = sorted([(created, 1) for created, _ in spans] + [(started, -1) for _, started in spans])
    most = queued = 0
    for _, change in events:
        queued += change
        most = max(most, queued)
    return most
