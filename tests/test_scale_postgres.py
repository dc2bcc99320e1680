"""Many servers and workers on one PostgreSQL, as real processes: every job done exactly once, a killed worker's
job finished by another within the lease, two servers starting together migrate once, a worker paused past its
lease cannot overwrite the result of the one that took over."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import postgres
from tests.support.jobs import TEXT, TRANSCRIPTIONS, journal_events, submit, wait_until
from tests.support.processes import ServerProcess, server_env

pytestmark = pytest.mark.slow
LEASE = 2.0


@pytest.fixture
def database_url() -> Iterator[str]:
    reason = postgres.unreachable_reason()
    if reason:
        pytest.skip(reason)
    with postgres.fresh_database() as url:
        yield url


@contextlib.contextmanager
def cluster(tmp_path: Path, model_dir: Path, url: str, *, servers: int, workers: int, **env: str) -> Iterator[
    tuple[list[ServerProcess], list[ServerProcess]]
]:
    """API-only servers (WORKERS=0) and worker nodes on one database, killed at the end whatever happened."""
    base = server_env(model_dir, tmp_path / "unused.db", database_url=url, max_queue_size=200, **env)
    apis = [ServerProcess({**base, "WORKERS": "0"}, tmp_path / f"server{i}.log") for i in range(servers)]
    nodes = [
        ServerProcess({**base, "WORKERS": "1", "WAZO_TEST_ROLE": "worker"}, tmp_path / f"worker{i}.log")
        for i in range(workers)
    ]
    try:
        yield apis, nodes
    finally:
        for process in apis + nodes:
            with contextlib.suppress(Exception):
                os.kill(process.pid, signal.SIGCONT)
            process.kill()


@contextlib.contextmanager
def one_job_started(
    tmp_path: Path, model_dir: Path, url: str, journal: Path, *, delay: int
) -> Iterator[tuple[httpx.Client, str, ServerProcess]]:
    """One API server and two worker nodes, one 3 s job (each taking ``delay`` s) submitted and started: yields
    the client, the job's id and the worker node holding its lease, for the lease tests to kill or pause."""
    with cluster(
        tmp_path, model_dir, url, servers=1, workers=2, wazo_test_journal=journal, wazo_test_delay=delay
    ) as ([api], nodes):
        api.start()
        for node in nodes:
            node.start()
        with httpx.Client(base_url=api.url, timeout=30) as client:
            job = submit(client, "m", 3.0)
            wait_until(lambda: journal.exists() and "start 3.00" in journal.read_text(), what="job started")
            holder_pid = int(journal.read_text().split()[0])
            [holder] = [n for n in nodes if n.pid == holder_pid]
            yield client, job, holder


def position(client: httpx.Client, job_id: str) -> int | None:
    return client.get(f"{TRANSCRIPTIONS}/{job_id}").json()["queue_position"]


def test_three_servers_two_workers_do_every_job_exactly_once(tmp_path, tiny_model_dir, database_url):
    journal = tmp_path / "journal.txt"
    with cluster(tmp_path, tiny_model_dir, database_url, servers=3, workers=2, wazo_test_journal=journal) as (
        apis,
        nodes,
    ):
        for api in apis:
            api.start()
        clients = [httpx.Client(base_url=api.url, timeout=30) for api in apis]
        # 100 voicemails, told apart by length, submitted round-robin before any worker runs: positions 1..100.
        seconds = [2.0 + 0.01 * i for i in range(100)]
        ids, positions = [], []
        for i, (client, length) in enumerate(zip(itertools.cycle(clients), seconds, strict=False)):
            response = client.post(
                TRANSCRIPTIONS,
                files={"file": ("vm.wav", _voicemail(length))},
                data={"user_uuid": "u", "message_id": f"m{i}"},
            )
            assert response.status_code == 200, response.text
            ids.append(response.json()["job_id"])
            positions.append(response.json()["queue_position"])
        assert positions == list(range(1, 101))
        for node in nodes:
            node.start()
        # While the workers drain the queue, each job's position (asked of any server) never goes backwards.
        last = dict.fromkeys(ids, 101)
        deadline = time.monotonic() + 240
        while any(last.values()):
            assert time.monotonic() < deadline, "queue not drained"
            for client, job_id in zip(itertools.cycle(clients), [i for i in ids if last[i]], strict=False):
                now = position(client, job_id) or 0
                assert now <= last[job_id], f"{job_id}: position went from {last[job_id]} to {now}"
                last[job_id] = now
        wait_until(lambda: clients[0].get("/health").json()["db_stats"]["completed"] == 100, timeout=120)
        # A synchronous request on an API-only server is answered when a worker process finishes its job.
        sync = clients[1].post(TRANSCRIPTIONS, files={"file": ("a.wav", _voicemail(3.5))})
        assert sync.status_code == 200 and sync.json()["text"] == TEXT
        assert postgres.rows(database_url, "SELECT status, attempts, COUNT(*) FROM jobs GROUP BY 1, 2") == [
            ("completed", 1, 101)
        ]
        assert postgres.rows(database_url, "SELECT COUNT(*) FROM job_audio") == [(0,)]
        for client in clients:
            client.close()
    events = journal_events(journal)
    assert {k: n for k, n in events.items() if k.startswith("end")} == {f"end {s:.2f}": 1 for s in [*seconds, 3.5]}
    assert sum(n for k, n in events.items() if k.startswith("start")) == 101
    # Both workers took part.
    pids = {line.split()[0] for line in journal.read_text().splitlines()}
    assert len(pids) == 2


def test_a_killed_workers_job_is_finished_by_another_within_the_lease(tmp_path, tiny_model_dir, database_url):
    journal = tmp_path / "journal.txt"
    with one_job_started(tmp_path, tiny_model_dir, database_url, journal, delay=4) as (client, job, victim):
        killed_at = time.monotonic()
        victim.kill()  # kill -9: no handler runs, the lease is simply no longer renewed
        wait_until(lambda: client.get(f"{TRANSCRIPTIONS}/{job}").json()["status"] == "completed", timeout=30)
        # Taken back when the lease expired (not at a restart: nothing was restarted), then 4 s of work.
        assert time.monotonic() - killed_at < LEASE + 4 + 5
        assert victim.process.poll() is not None
        body = client.get(f"{TRANSCRIPTIONS}/{job}").json()
        assert body["text"] == TEXT
    assert postgres.rows(database_url, "SELECT attempts FROM jobs") == [(2,)]
    assert journal_events(journal)["end 3.00"] == 1


def test_two_servers_started_at_once_on_a_fresh_database_migrate_once(tmp_path, tiny_model_dir, database_url):
    """The test holds the migration lock while both servers start: neither may touch the schema meanwhile; let go,
    both race for it at the same instant, one migrates, the other finds the work done, both serve."""
    import asyncio

    import asyncpg
    from alembic.script import ScriptDirectory

    from wazo_stt.jobs.database import advisory_key
    from wazo_stt.jobs.migrate import alembic_config

    loop = asyncio.new_event_loop()
    holder = loop.run_until_complete(asyncpg.connect(database_url.replace("+asyncpg", "")))
    try:
        loop.run_until_complete(holder.execute("SELECT pg_advisory_lock($1)", advisory_key("migrations")))
        with cluster(tmp_path, tiny_model_dir, database_url, servers=2, workers=0) as (apis, _):
            for api in apis:
                api.start(ready=False)
            time.sleep(5)  # both started and waiting for the lock
            assert postgres.rows(database_url, "SELECT to_regclass('alembic_version')::text") == [(None,)]
            assert not any(_healthy(api.url) for api in apis)
            loop.run_until_complete(holder.execute("SELECT pg_advisory_unlock_all()"))
            for api in apis:
                wait_until(lambda api=api: _healthy(api.url), timeout=60, what=f"{api.url} healthy")
            logs = "".join(api.log() for api in apis)
    finally:
        loop.run_until_complete(holder.close())
        loop.close()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert logs.count(f"Job database schema migrated from nothing to {head}") == 1, logs
    assert postgres.rows(database_url, "SELECT version_num FROM alembic_version") == [(head,)]


def test_a_worker_paused_past_its_lease_cannot_overwrite_the_takeover(tmp_path, tiny_model_dir, database_url):
    journal = tmp_path / "journal.txt"
    with one_job_started(tmp_path, tiny_model_dir, database_url, journal, delay=3) as (client, job, paused):
        os.kill(paused.pid, signal.SIGSTOP)
        wait_until(lambda: client.get(f"{TRANSCRIPTIONS}/{job}").json()["status"] == "completed", timeout=30)
        winner = postgres.rows(database_url, "SELECT finished_at, text, attempts FROM jobs")
        os.kill(paused.pid, signal.SIGCONT)  # it wakes up believing the job is still its own
        wait_until(lambda: "lease lost" in paused.log(), timeout=15, what="the paused worker noticed")
        time.sleep(1)
        assert postgres.rows(database_url, "SELECT finished_at, text, attempts FROM jobs") == winner
        assert winner[0][2] == 2
        assert paused.process.poll() is None  # alive, and taking jobs again
        assert client.get(f"{TRANSCRIPTIONS}/{submit(client, 'next', 2.5)}").status_code == 200


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    return False


def _voicemail(seconds: float) -> bytes:
    from tests.support.jobs import voicemail

    return voicemail(seconds)
