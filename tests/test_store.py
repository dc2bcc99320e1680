"""The job store on SQLite and PostgreSQL: ordering, positions, uniqueness under concurrency, force, retention."""

from __future__ import annotations

import asyncio

import pytest

from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.jobs.records import NewJob, QueueFullError


def new_job(user: str | None = None, message: str | None = None) -> NewJob:
    return NewJob(
        audio=b"RIFF....", audio_duration=1.0, model="m", response_format="json", user_uuid=user, message_id=message
    )


TRANSCRIPT = Transcript(text="hi", language="en", duration=1.0, segments=[], words=[])
W = "worker-a"


async def test_queue_order_positions_and_claims(store):
    ids = [(await store.submit(new_job())).job.id for _ in range(3)]
    assert [await store.queue_position(i) for i in ids] == [1, 2, 3]
    claimed = await store.claim_next(W)
    assert claimed.id == ids[0] and claimed.status is JobStatus.PROCESSING and claimed.attempts == 1
    assert await store.queue_position(ids[0]) is None
    assert [await store.queue_position(i) for i in ids[1:]] == [1, 2]
    assert await store.audio(ids[0]) == b"RIFF...."
    await store.complete(ids[0], W, TRANSCRIPT)
    job = await store.get(ids[0], with_transcript=True)
    assert job.status is JobStatus.COMPLETED and job.transcript == TRANSCRIPT
    assert await store.audio(ids[0]) is None  # audio of finished jobs is deleted
    assert (await store.counts())["completed"] == 1


async def test_a_submission_knows_its_position_even_if_a_worker_takes_it_at_once(store):
    """The response is written after the commit; by then the worker may hold the job (it was position 0)."""
    first = await store.submit(new_job())
    second = await store.submit(new_job())
    await store.claim_next(W)
    await store.claim_next(W)
    assert (first.queue_position, second.queue_position) == (1, 2)
    assert await store.queue_position(second.job.id) is None


async def test_queue_full(store):
    for _ in range(5):
        await store.submit(new_job())
    with pytest.raises(QueueFullError):
        await store.submit(new_job())


async def test_concurrent_submissions_of_one_pair_create_one_job(store):
    submissions = await asyncio.gather(*(store.submit(new_job("u", "m")) for _ in range(20)))
    assert len({s.job.id for s in submissions}) == 1
    assert sum(s.created for s in submissions) == 1
    assert (await store.counts())["queued"] == 1


async def test_force_replaces_only_a_finished_job(store):
    first = (await store.submit(new_job("u", "m"))).job
    again = await store.submit(new_job("u", "m"), force=True)
    assert not again.created and again.job.id == first.id  # still queued: not queued twice
    await store.claim_next(W)
    await store.complete(first.id, W, TRANSCRIPT)
    cached = await store.submit(new_job("u", "m"))
    assert not cached.created and cached.job.status is JobStatus.COMPLETED
    forced = await store.submit(new_job("u", "m"), force=True)
    assert forced.created and forced.job.id != first.id
    assert await store.get(first.id) is None
    assert (await store.lookup("u", "m")).id == forced.job.id


async def test_retention_purges_old_finished_jobs(store, clock):
    old = (await store.submit(new_job("u", "old"))).job
    await store.claim_next(W)
    await store.complete(old.id, W, TRANSCRIPT)
    clock.now += 10 * 86400
    recent = (await store.submit(new_job("u", "recent"))).job
    await store.claim_next(W)
    await store.complete(recent.id, W, TRANSCRIPT)
    queued_long_ago = (await store.submit(new_job())).job
    clock.now += 31 * 86400 - 10 * 86400 + 1
    assert await store.purge_older_than(30) == 1
    assert await store.lookup("u", "old") is None
    assert (await store.lookup("u", "recent")).text == "hi"
    assert (await store.get(queued_long_ago.id)).status is JobStatus.QUEUED  # never purges pending work
