"""TEXT_RETENTION_DAYS is enforced on a schedule, not only at start-up: a server runs for months.

The loop runs for real (a short interval) over a real store whose clock is fake, so days pass in milliseconds.
"""

from __future__ import annotations

import asyncio

import pytest

from wazo_stt.domain import Transcript
from wazo_stt.jobs.records import NewJob
from wazo_stt.jobs.retention import retention_loop
from wazo_stt.jobs.store import JobStore

DAY = 86400.0
TRANSCRIPT = Transcript(text="hi", language="en", duration=1.0, segments=[], words=[])


async def finished_job(store: JobStore, message_id: str) -> str:
    job = (
        await store.submit(
            NewJob(
                audio=b"x", audio_duration=1.0, model="m", response_format="json", user_uuid="u", message_id=message_id
            )
        )
    ).job
    claimed = await store.claim_next("w")
    assert claimed is not None and claimed.id == job.id
    await store.complete(job.id, "w", TRANSCRIPT)
    return job.id


async def eventually(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not purged in time"
        await asyncio.sleep(0.01)


async def test_the_loop_purges_on_every_tick_as_jobs_age(store, clock):
    old = await finished_job(store, "old")
    clock.now += 20 * DAY
    young = await finished_job(store, "young")
    clock.now += 11 * DAY  # old: 31 days, young: 11 days
    loop = asyncio.create_task(retention_loop(store, days=30, interval=0.02))
    try:
        await eventually(lambda: _gone(store, old))
        assert await store.get(young) is not None
        # Later ticks, not only the first: once young passes 30 days, a later purge takes it too.
        clock.now += 20 * DAY
        await eventually(lambda: _gone(store, young))
        assert not loop.done()
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


async def test_a_failing_purge_is_retried_at_the_next_tick(store, clock):
    old = await finished_job(store, "old")
    clock.now += 31 * DAY
    real = store.purge_older_than
    calls = 0

    async def failing_once(days: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk I/O error")
        return await real(days)

    store.purge_older_than = failing_once  # type: ignore[method-assign]
    loop = asyncio.create_task(retention_loop(store, days=30, interval=0.02))
    try:
        await eventually(lambda: _gone(store, old))
        assert calls >= 2 and not loop.done()
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


async def test_zero_days_keeps_everything(store, clock):
    kept = await finished_job(store, "kept")
    clock.now += 10_000 * DAY
    await asyncio.wait_for(retention_loop(store, days=0, interval=0.01), timeout=1)  # returns at once
    assert await store.get(kept) is not None


async def _gone(store: JobStore, job_id: str) -> bool:
    return await store.get(job_id) is None
