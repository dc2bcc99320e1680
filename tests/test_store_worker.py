"""The worker pool on a real store (SQLite and PostgreSQL) and the real tiny engine: a job whose result cannot be
stored is counted and failed, never re-run forever; progress reaches the database while a job runs."""

from __future__ import annotations

import asyncio

from tests.support.jobs import voicemail
from wazo_stt.domain import JobStatus
from wazo_stt.engine.loader import load_engines
from wazo_stt.jobs.records import NewJob
from wazo_stt.jobs.worker import WorkerPool


async def test_a_result_that_cannot_be_stored_fails_the_job_after_max_attempts(store, settings):
    """Issue 12: a non-database error after inference released the job with its attempt uncounted: 13 full
    transcriptions in 3 s were seen. Now each one counts; after MAX_ATTEMPTS the job fails with the reason."""
    registry = await asyncio.to_thread(load_engines, settings)
    calls = 0

    async def unstorable(*_args, **_kwargs):
        nonlocal calls
        calls += 1
        raise ValueError("Out of range float values are not JSON compliant")

    store.complete = unstorable  # type: ignore[method-assign]
    job = (await store.submit(NewJob(voicemail(2.0), 2.0, registry.default_id, "json"))).job
    pool = WorkerPool(store, lambda: registry, poll_seconds=0.05)
    pool.start()
    try:
        finished = await pool.wait_finished(job.id, timeout=60)
    finally:
        await pool.stop(grace_seconds=5)
    assert finished.status is JobStatus.FAILED, finished
    assert calls == store.max_attempts == finished.attempts
    assert finished.error == (
        f"Failed {store.max_attempts} times; giving up. Last error: "
        "ValueError: Out of range float values are not JSON compliant"
    )


async def test_progress_and_partial_text_reach_the_database_while_the_job_runs(store, settings):
    """Written with the lease's renewal (at most once a second), so any server can report them."""
    registry = await asyncio.to_thread(load_engines, settings)
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    for engine in registry.engines:
        real = engine.transcribe

        def halfway(audio, language, progress=None, real=real):
            progress(0.5, "hello")
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)
            return real(audio, language)

        engine.transcribe = halfway  # type: ignore[method-assign]
    job = (await store.submit(NewJob(voicemail(2.0), 2.0, registry.default_id, "json"))).job
    pool = WorkerPool(store, lambda: registry, poll_seconds=0.05)
    pool.start()
    try:
        for _ in range(100):
            snapshot = await store.snapshot(job.id)
            if snapshot.progress == 0.5:
                break
            await asyncio.sleep(0.05)
        assert (snapshot.job.status, snapshot.progress, snapshot.job.partial_text) == (
            JobStatus.PROCESSING,
            0.5,
            "hello",
        )
        release.set()
        finished = await pool.wait_finished(job.id, timeout=30)
        assert finished.status is JobStatus.COMPLETED and finished.partial_text is None
    finally:
        release.set()
        await pool.stop(grace_seconds=5)
