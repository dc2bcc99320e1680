"""The webhook outbox in the real job store (SQLite and PostgreSQL): written with the job's end, claimed under a
lease, never undone."""

from __future__ import annotations

import asyncio
import dataclasses

from wazo_stt.domain import Transcript
from wazo_stt.jobs.store import NewJob

TRANSCRIPT = Transcript(text="hi", language="en", duration=1.0, segments=[], words=[])
HOOK = "http://127.0.0.1:9/hook?token=t"
LEASE = 30.0
WORKER = "w1"


def new_job(callback_url: str | None = HOOK) -> NewJob:
    return NewJob(audio=b"RIFF", audio_duration=1.0, model="m", response_format="json", callback_url=callback_url)


async def finished_job(store, *, ok: bool = True, callback_url: str | None = HOOK) -> str:
    job_id = (await store.submit(new_job(callback_url))).job.id
    claimed = await store.claim_next(WORKER)
    assert claimed.id == job_id
    if ok:
        await store.complete(job_id, WORKER, TRANSCRIPT)
    else:
        await store.fail(job_id, WORKER, "broken")
    return job_id


async def test_the_event_is_written_when_the_job_ends_not_before(store):
    outbox = store.outbox
    job_id = (await store.submit(new_job())).job.id
    await store.claim_next(WORKER)
    assert await outbox.claim_due(10, LEASE) == [] and await outbox.pending_count() == 0
    await store.complete(job_id, WORKER, TRANSCRIPT)
    (event,) = await outbox.claim_due(10, LEASE)
    assert (event.job_id, event.url, event.event_type, event.attempts) == (job_id, HOOK, "transcription.completed", 0)
    failed_id = await finished_job(store, ok=False)
    events = await outbox.claim_due(10, LEASE)
    assert [e.event_type for e in events if e.job_id == failed_id] == ["transcription.failed"]


async def test_no_callback_no_event(store):
    await finished_job(store, callback_url=None)
    assert await store.outbox.claim_due(10, LEASE) == []


async def test_a_claimed_event_is_held_for_its_lease_then_taken_again(store, clock):
    outbox = store.outbox
    await finished_job(store)
    (event,) = await outbox.claim_due(10, LEASE)
    clock.now += LEASE - 1
    assert await outbox.claim_due(10, LEASE) == []  # its process is still delivering it
    clock.now += 2  # that process died: the lease ran out
    (again,) = await outbox.claim_due(10, LEASE)
    assert again == event


async def test_concurrent_claims_never_share_an_event(store):
    outbox = store.outbox
    for _ in range(4):
        await finished_job(store)
    batches = await asyncio.gather(*(outbox.claim_due(2, LEASE) for _ in range(4)))
    ids = [e.id for batch in batches for e in batch]
    assert len(ids) == 4 and len(set(ids)) == 4


async def test_retry_waits_and_delivery_is_final(store, clock):
    outbox = store.outbox
    job_id = await finished_job(store)
    (event,) = await outbox.claim_due(10, LEASE)
    await outbox.retry_at(event.id, clock.now + 10, "HTTP 500")
    state = await outbox.state_for_job(job_id)
    assert (state.status, state.attempts, state.last_error, state.next_attempt_at) == (
        "pending",
        1,
        "HTTP 500",
        clock.now + 10,
    )
    assert await outbox.claim_due(10, LEASE) == []
    clock.now += 10
    (retry,) = await outbox.claim_due(10, LEASE)
    assert retry == dataclasses.replace(event, attempts=1)
    await outbox.delivered(event.id)
    await outbox.retry_at(event.id, clock.now, "late answer from a process whose lease ran out")
    state = await outbox.state_for_job(job_id)
    assert (state.status, state.attempts, state.last_error) == ("delivered", 2, None)
    assert await outbox.pending_count() == 0


async def test_giving_up_is_recorded(store):
    outbox = store.outbox
    job_id = await finished_job(store)
    (event,) = await outbox.claim_due(10, LEASE)
    await outbox.give_up(event.id, "HTTP 410")
    state = await outbox.state_for_job(job_id)
    assert (state.status, state.last_error, state.next_attempt_at) == ("failed", "HTTP 410", None)
    assert await outbox.claim_due(10, LEASE) == []
