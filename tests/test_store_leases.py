"""Leases, attempts, snapshots, tenants and change events of the job store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import insert, select

from tests.test_store import TRANSCRIPT, new_job
from wazo_stt.domain import JobStatus
from wazo_stt.jobs.database import DuplicateError
from wazo_stt.jobs.records import NewJob
from wazo_stt.jobs.schema import JobRow
from wazo_stt.jobs.store import JobStore

A, B = "worker-a", "worker-b"
LEASE = 30  # the store fixture's lease


async def test_an_expired_lease_is_taken_back_at_once_and_the_old_holder_can_write_nothing(store, clock):
    job = (await store.submit(new_job())).job
    assert (await store.claim_next(A)).id == job.id
    clock.now += LEASE - 1
    assert await store.claim_next(B) is None  # still A's
    clock.now += 2
    taken = await store.claim_next(B)
    assert taken.id == job.id and taken.attempts == 2 and taken.worker_id == B
    # A was paused past its lease: it can neither renew, nor fail, nor complete the job any more.
    assert not await store.renew(job.id, A, progress=0.9)
    assert not await store.fail(job.id, A, "late")
    assert not await store.complete(job.id, A, dataclasses.replace(TRANSCRIPT, text="stale"))
    assert await store.complete(job.id, B, TRANSCRIPT)
    done = await store.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.text == "hi" and done.worker_id is None


async def test_renewing_keeps_the_lease(store, clock):
    job = (await store.submit(new_job())).job
    await store.claim_next(A)
    for _ in range(3):
        clock.now += LEASE - 5
        assert await store.renew(job.id, A)
    assert await store.claim_next(B) is None
    assert (await store.get(job.id)).worker_id == A


async def test_a_job_whose_worker_keeps_dying_fails_with_the_reason_after_max_attempts(store, clock):
    job = (await store.submit(new_job())).job
    behind = (await store.submit(new_job())).job
    for attempt in range(1, store.max_attempts + 1):
        claimed = await store.claim_next(f"w{attempt}")
        assert (claimed.id, claimed.attempts) == (job.id, attempt)
        clock.now += LEASE + 1
    # The next claim fails the exhausted job and hands out the one behind it.
    assert (await store.claim_next(B)).id == behind.id
    failed = await store.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error == f"The server stopped while transcribing this job {store.max_attempts} times; giving up"
    assert await store.audio(job.id) is None


async def test_a_job_that_cannot_be_finished_is_retried_counted_then_failed_never_looping(store):
    """Issue 12: a non-database error after inference (its result cannot be stored) used to release the job with
    its attempt uncounted, so it ran forever."""
    job = (await store.submit(new_job())).job
    outcomes = []
    for _ in range(store.max_attempts + 2):
        claimed = await store.claim_next(A)
        if claimed is None:
            break
        outcomes.append(await store.retry_later(claimed.id, A, "ValueError: cannot serialise"))
    assert outcomes == [JobStatus.QUEUED] * (store.max_attempts - 1) + [JobStatus.FAILED]
    failed = await store.get(job.id)
    assert failed.attempts == store.max_attempts
    assert failed.error == f"Failed {store.max_attempts} times; giving up. Last error: ValueError: cannot serialise"


async def test_release_puts_the_job_back_uncounted_in_its_place(store):
    first = (await store.submit(new_job())).job
    await store.submit(new_job())
    await store.claim_next(A)
    assert not await store.release(first.id, B)  # not B's to release
    assert await store.release(first.id, A)
    again = await store.claim_next(B)
    assert again.id == first.id and again.attempts == 1


async def test_a_snapshot_reads_status_position_and_progress_together(store):
    first = (await store.submit(new_job())).job
    second = (await store.submit(new_job())).job
    snap = await store.snapshot(second.id)
    assert (snap.job.status, snap.queue_position, snap.progress) == (JobStatus.QUEUED, 2, None)
    await store.claim_next(A)
    running = await store.snapshot(first.id)
    assert (running.job.status, running.queue_position, running.progress) == (JobStatus.PROCESSING, None, 0.0)
    assert (await store.snapshot(second.id)).queue_position == 1
    assert await store.renew(first.id, A, progress=0.5, partial_text="hello")
    running = await store.snapshot(first.id)
    assert (running.progress, running.job.partial_text) == (0.5, "hello")
    assert await store.snapshot("nope") is None


async def test_a_failed_pair_resubmitted_without_force_is_queued_again(store):
    first = (await store.submit(new_job("u", "m"))).job
    await store.claim_next(A)
    await store.fail(first.id, A, "bad audio")
    again = await store.submit(new_job("u", "m"))
    assert again.created and again.job.status is JobStatus.QUEUED and again.queue_position == 1
    assert (await store.lookup("u", "m")).id == again.job.id


async def test_tenants_see_only_their_jobs_and_own_their_pairs(store):
    mine = (await store.submit(NewJob(b"a", 1.0, "m", "json", user_uuid="u", message_id="m", tenant="t1"))).job
    theirs = await store.submit(NewJob(b"a", 1.0, "m", "json", user_uuid="u", message_id="m", tenant="t2"))
    assert theirs.created and theirs.job.id != mine.id  # a pair is unique per tenant
    assert await store.get(mine.id, tenant="t2") is None
    assert (await store.get(mine.id, tenant="t1")).id == mine.id
    assert (await store.get(mine.id)).tenant == "t1"  # no scope: an operator sees every tenant
    assert (await store.lookup("u", "m", tenant="t2")).id == theirs.job.id
    assert await store.snapshot(mine.id, tenant="t2") is None
    assert (await store.counts(tenant="t1"))["queued"] == 1 and (await store.counts())["queued"] == 2


async def test_the_database_itself_refuses_a_second_job_for_a_pair(store):
    """The constraint, not the submit's read, is what makes a pair unique (two processes can both read 'absent')."""
    await store.submit(new_job("u", "m"))
    row = {"status": "queued", "user_uuid": "u", "message_id": "m", "model": "m", "response_format": "json",
           "granularities": "", "created_at": 0.0, "attempts": 0, "tenant": ""}
    with pytest.raises(DuplicateError):
        async with store._db.writing() as session:
            await session.execute(insert(JobRow).values(id="dup", **row))
    async with store._db.writing() as session:  # the same pair in another tenant is another voicemail
        await session.execute(insert(JobRow).values(id="other", **{**row, "tenant": "t2"}))


async def test_concurrent_claims_each_get_a_different_job(store):
    """FOR UPDATE SKIP LOCKED: N workers claiming at once never collide and never come back empty while jobs wait
    (on SQLite the write lock serialises them)."""
    ids = {(await store.submit(new_job())).job.id for _ in range(5)}
    claimed = await asyncio.gather(*(store.claim_next(f"w{i}") for i in range(5)))
    assert None not in claimed
    assert {job.id for job in claimed} == ids


async def test_a_claim_skips_a_job_another_worker_is_claiming(store):
    """While another worker's claim holds the oldest row locked, a claim takes the next one at once: it neither
    waits for the lock nor comes back empty (FOR UPDATE SKIP LOCKED)."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite has one writer at a time: claims never overlap")
    first = (await store.submit(new_job())).job
    second = (await store.submit(new_job())).job
    async with store._db.writing() as session:
        await session.execute(select(JobRow).where(JobRow.id == first.id).with_for_update())
        claimed = await asyncio.wait_for(store.claim_next(B), timeout=5)
    assert claimed is not None and claimed.id == second.id


async def test_a_waiter_learns_that_another_process_finished_the_job(store, database_url, clock):
    """Another store (another process, as far as the database knows) completes the job: a waiter on the first is
    woken by the change event (PostgreSQL NOTIFY), not by its poll timeout."""
    other = await JobStore.open(database_url=database_url, max_queue_size=5, clock=clock, lease_seconds=30)
    try:
        job = (await store.submit(new_job())).job
        await other.claim_next(B)
        with store.watch(job.id) as changed:
            finishing = asyncio.create_task(asyncio.sleep(0.2))
            finishing.add_done_callback(lambda _: asyncio.ensure_future(other.complete(job.id, B, TRANSCRIPT)))
            while (await store.get(job.id)).status is not JobStatus.COMPLETED:
                woken = await changed.wait(timeout=10)
                # PostgreSQL: woken by NOTIFY (a poll would return False, after 5 s); SQLite: polling (1 s).
                assert woken or store.dialect == "sqlite", "no NOTIFY reached the waiter"
    finally:
        await other.close()


async def test_a_job_queued_by_another_process_wakes_idle_workers_at_once(store, database_url, clock):
    if store.dialect == "sqlite":
        pytest.skip("SQLite has no notifications: idle workers poll every second")
    woken = asyncio.Event()
    store.events.on_queued(woken.set)
    for _ in range(100):
        if store.events.listening:
            break
        await asyncio.sleep(0.05)
    other = await JobStore.open(database_url=database_url, max_queue_size=5, clock=clock)
    try:
        await other.submit(new_job())
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        await other.close()


async def test_retention_runs_on_one_server_at_a_time(store, database_url, clock):
    """While another server's purge holds the retention lock, this one skips its round (PostgreSQL)."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite purges under its write lock: one at a time already")
    import asyncpg

    from wazo_stt.jobs.database import advisory_key

    job = (await store.submit(new_job())).job
    await store.claim_next(A)
    await store.complete(job.id, A, TRANSCRIPT)
    clock.now += 31 * 86400
    other = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock($1)", advisory_key("retention"))
            assert await store.purge_older_than(30) == 0
    finally:
        await other.close()
    assert await store.purge_older_than(30) == 1
