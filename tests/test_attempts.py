"""Attempts that mean something (issue 14): a worker process's death counts against a job only when that job was
plausibly the cause — it was the only job the process held. Jobs that died together are put back uncounted and
run alone from then on (suspects), so a culprit is still caught: its next death is its own. On both dialects, then
with the real server killed with ``kill -9``."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.jobs import TRANSCRIPTIONS, journal_events, status, submit, wait_until
from tests.support.processes import db_rows, server_env, server_process
from tests.test_store import new_job
from wazo_stt.domain import JobStatus

LEASE = 30  # the store fixture's lease


async def test_jobs_of_a_process_that_died_holding_several_are_not_counted_and_then_run_alone(store, clock):
    first = (await store.submit(new_job())).job
    second = (await store.submit(new_job())).job
    assert (await store.claim_next("host:1:aa/0")).id == first.id
    assert (await store.claim_next("host:1:aa/1")).id == second.id
    clock.now += LEASE + 1  # the process died holding both
    claimed = await store.claim_next("host:2:bb/0")
    assert claimed.id == first.id and claimed.attempts == 1  # put back uncounted, then claimed: its first count
    assert (await store.get(second.id)).attempts == 0
    # A suspect runs alone: the other worker of that process takes nothing meanwhile...
    assert await store.claim_next("host:2:bb/1") is None
    # ...while another process may take the second (alone as well: its own process is idle).
    assert (await store.claim_next("host:3:cc/0")).id == second.id
    assert await store.claim_next("host:3:cc/1") is None


async def test_jobs_whose_leases_expire_a_moment_apart_are_still_judged_together(store, clock):
    """Each worker renews its own lease, up to a second apart: a process that died holding two jobs must not have
    the first to expire judged as the only one it held (counted), nor run beside the other (seen in CI)."""
    first = (await store.submit(new_job("u1"))).job
    second = (await store.submit(new_job("u2"))).job
    await store.claim_next("host:1:aa/0")
    clock.now += 0.8
    await store.claim_next("host:1:aa/1")  # its lease ends 0.8 s after the first's
    clock.now += LEASE - 0.8 + 0.1  # only the first lease has expired
    assert await store.claim_next("host:2:bb/0") is None  # not judged yet: the process's other lease still runs
    assert (await store.get(first.id)).status is JobStatus.PROCESSING
    clock.now += 1  # now both: judged together, both suspects, neither counted
    claimed = await store.claim_next("host:2:bb/0")
    assert claimed.id == first.id and claimed.attempts == 1
    assert (await store.get(second.id)).attempts == 0
    assert await store.claim_next("host:2:bb/1") is None  # suspects run alone


async def test_a_stuck_job_of_a_live_process_is_still_taken_back_after_a_whole_lease(store, clock):
    """A process that keeps renewing one job but not the other is alive: the silent job is not held forever."""
    first = (await store.submit(new_job("u1"))).job
    await store.submit(new_job("u2"))
    await store.claim_next("host:1:aa/0")
    second = await store.claim_next("host:1:aa/1")
    clock.now += LEASE + 1
    assert await store.renew(second.id, "host:1:aa/1")  # the process lives: it renews one of its jobs
    clock.now += LEASE  # the first job's lease expired a whole lease ago: the process had time to renew it
    assert (await store.claim_next("host:2:bb/0")).id == first.id


async def test_a_busy_process_does_not_take_a_suspect(store, clock):
    suspects = {(await store.submit(new_job(user))).job.id for user in ("u1", "u2")}
    await store.claim_next("p:1/0")
    await store.claim_next("p:1/1")
    clock.now += LEASE + 1
    plain = (await store.submit(new_job("u3"))).job
    assert (await store.claim_next("p:2/0")).id == plain.id  # u3 was never served: first in the rotation
    assert await store.claim_next("p:2/1") is None  # only suspects wait, and p:2 is busy
    assert (await store.claim_next("p:3/0")).id in suspects  # p:3 is idle: it takes one, to run alone


async def test_the_culprit_is_still_failed_once_it_dies_alone(store, clock):
    """A poisoned job that first dies beside another job is not counted then, but runs alone from then on:
    its next deaths are its own, and it fails after max_attempts; the innocent job completes."""
    poison = (await store.submit(new_job("u1"))).job
    innocent = (await store.submit(new_job("u2"))).job
    await store.claim_next("p:0/0")
    await store.claim_next("p:0/1")
    clock.now += LEASE + 1
    for death in range(1, store.max_attempts + 1):
        pool = f"p:{death}"
        claimed = await store.claim_next(f"{pool}/0")
        if claimed.id == innocent.id:  # the innocent one runs (alone) and completes
            assert await store.complete(innocent.id, f"{pool}/0", _transcript())
            claimed = await store.claim_next(f"{pool}/0")
        assert claimed.id == poison.id and claimed.attempts == death
        clock.now += LEASE + 1  # it kills its process, alone
    assert await store.claim_next("p:9/0") is None  # the claim took it back and failed it
    failed = await store.get(poison.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error == f"The server stopped while transcribing this job {store.max_attempts} times; giving up"
    assert (await store.get(innocent.id)).status is JobStatus.COMPLETED


def running(db, pid: int) -> list[tuple]:
    return db_rows(db, "SELECT id FROM jobs WHERE status = 'processing' AND worker_id LIKE ?", (f"%:{pid}:%",))


def _transcript():
    from tests.test_store import TRANSCRIPT

    return TRANSCRIPT


@pytest.mark.slow
def test_an_innocent_voicemail_survives_unrelated_kills_of_a_two_worker_server(tmp_path, tiny_model_dir):
    """Issue 14: 'a normal 88 s voicemail ended failed after unrelated kills'. Two jobs run side by side in a
    two-worker server that is killed three times while they run: neither is failed, both complete once."""
    db = tmp_path / "data" / "jobs.db"
    journal = tmp_path / "journal.txt"
    env = server_env(tiny_model_dir, db, workers=2, wazo_test_journal=journal)
    with server_process(env, tmp_path / "server.log") as server, httpx.Client(base_url=server.url) as client:
        server.start(WAZO_TEST_DELAY="30")
        jobs = [submit(client, "a", 3.0, user_uuid="u1"), submit(client, "b", 3.1, user_uuid="u2")]
        for kill in range(3):
            # Killed while this process runs its jobs: both at the first kill; after it, suspects run one at a time.
            expected = 2 if kill == 0 else 1
            wait_until(lambda n=expected: len(running(db, server.pid)) == n, what="jobs running")
            if kill:
                time.sleep(1.5)  # the other worker polls (1 s): it must not take the other suspect meanwhile
                assert len(running(db, server.pid)) == 1
            server.kill()
            server.start(WAZO_TEST_DELAY="30")
        server.kill()
        assert db_rows(db, "SELECT COUNT(*) FROM jobs WHERE status = 'failed'") == [(0,)]
        server.start(WAZO_TEST_DELAY="0")
        wait_until(lambda: all(status(client, j) == "completed" for j in jobs), what="both completed")
        for job_id in jobs:
            assert client.get(f"{TRANSCRIPTIONS}/{job_id}").json()["status"] == "completed"
        (max_attempts,) = db_rows(db, "SELECT MAX(attempts) FROM jobs")[0]
        assert max_attempts <= 3
    assert journal_events(journal)["end 3.00"] == journal_events(journal)["end 3.10"] == 1
