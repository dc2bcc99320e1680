"""Erasure in the job store, on SQLite and the real PostgreSQL: a deleted job is gone (row, audio, text) within its
tenant only, a running job's worker is refused and moves on, and on SQLite nothing of it stays in the files."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import event

from tests.support import postgres
from tests.support.jobs import voicemail
from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.engine.loader import load_engines
from wazo_stt.jobs.database import Database
from wazo_stt.jobs.migrate import run_migrations
from wazo_stt.jobs.records import NewJob
from wazo_stt.jobs.store import JobStore
from wazo_stt.jobs.worker import WorkerPool

# A transcript and an audio payload found nowhere else, so a byte search in the database files means "this job".
SECRET_TEXT = "Zanzibar-7731 please call the notary about the inheritance"
SECRET_AUDIO = b"RIFF" + os.urandom(48_000)  # the store keeps audio as given: random bytes have no other source


def _job(tenant: str = "", user_uuid: str | None = None, message_id: str | None = None, audio: bytes = b"a") -> NewJob:
    return NewJob(audio, 1.0, "m", "json", user_uuid=user_uuid, message_id=message_id, tenant=tenant)


def _transcript(text: str) -> Transcript:
    return Transcript(text=text, language="en", duration=1.0, segments=[], words=[])


async def test_delete_erases_a_queued_job_and_its_audio(store):
    job = (await store.submit(_job(audio=SECRET_AUDIO))).job
    deleted = await store.delete(job.id)
    assert (deleted.id, deleted.status) == (job.id, JobStatus.QUEUED)
    assert await store.get(job.id) is None and await store.audio(job.id) is None
    assert await store.claim_next("w") is None  # never runs
    assert sum((await store.counts()).values()) == 0
    assert await store.delete(job.id) is None  # already gone


async def test_delete_sees_only_its_tenant_and_an_admin_scope_sees_all(store):
    job = (await store.submit(_job("t1"))).job
    assert await store.delete(job.id, tenant="t2") is None
    assert (await store.get(job.id)).status is JobStatus.QUEUED  # untouched by the other tenant
    assert (await store.delete(job.id, tenant=None)).id == job.id  # admin
    assert await store.get(job.id) is None


async def test_delete_by_pair_or_by_user_stays_in_the_tenant(store):
    store.max_queue_size = 10
    t1_m1 = (await store.submit(_job("t1", "u", "m1"))).job
    t2_m1 = (await store.submit(_job("t2", "u", "m1"))).job  # the same pair in another tenant: its own job
    t1_m2 = (await store.submit(_job("t1", "u", "m2"))).job
    other_user = (await store.submit(_job("t1", "v", "m1"))).job
    assert t2_m1.id != t1_m1.id

    assert [j.id for j in await store.delete_matching("u", "m1", tenant="t1")] == [t1_m1.id]
    assert await store.lookup("u", "m1", tenant="t1") is None
    assert (await store.lookup("u", "m1", tenant="t2")).id == t2_m1.id
    assert [j.id for j in await store.delete_matching("u", tenant="t1")] == [t1_m2.id]  # the user's other jobs
    assert await store.delete_matching("u", tenant="t1") == []
    assert await store.get(other_user.id) is not None and await store.get(t2_m1.id) is not None


async def test_a_deleted_running_job_refuses_its_worker_and_never_comes_back(store):
    job = (await store.submit(_job())).job
    assert (await store.claim_next("w")).id == job.id
    assert (await store.delete(job.id)).status is JobStatus.PROCESSING
    assert await store.renew(job.id, "w", progress=0.5, partial_text="hel") is False
    assert await store.complete(job.id, "w", _transcript("hello")) is False
    assert await store.fail(job.id, "w", "boom") is False
    assert await store.retry_later(job.id, "w", "boom") is None
    assert await store.release(job.id, "w") is False
    assert await store.get(job.id) is None and await store.claim_next("w2") is None


def _files_contain(db: Path, needle: bytes) -> list[str]:
    """Which of the database's files (main, -wal, -shm) hold ``needle``, read as raw bytes like `strings` would."""
    found = []
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists() and needle in path.read_bytes():
            found.append(path.name)
    return found


def _upstream_default(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA secure_delete=OFF")


async def _sqlite_store_with_upstream_defaults(path: Path) -> JobStore:
    """A store on SQLite as built upstream (secure_delete off: Debian builds it on, so this machine's library
    would hide a store that forgot to ask for it), our own PRAGMAs applied after."""
    db = Database.connect(db_path=path)
    for engine in (db.reader, db.writer):
        event.listen(engine.sync_engine, "connect", _upstream_default, insert=True)
    await run_migrations(db)
    store = JobStore(db, max_queue_size=10)
    store.events.start()
    return store


async def test_deletion_leaves_no_trace_in_the_sqlite_files(tmp_path):
    """secure_delete zeroes the deleted cells and pages; the TRUNCATE checkpoint empties the WAL, which still
    held the pages as they were written. Without either, the text or the audio stays readable in a file."""
    db = tmp_path / "jobs.db"
    store = await _sqlite_store_with_upstream_defaults(db)
    try:
        await _submit_run_and_delete(store, db)
    finally:
        await store.close()


async def _submit_run_and_delete(store: JobStore, db: Path) -> None:
    keep = (await store.submit(_job(user_uuid="u", message_id="keep"))).job  # neighbours on the same pages
    done = (await store.submit(_job(user_uuid="u", message_id="done", audio=SECRET_AUDIO))).job
    queued = (await store.submit(_job(user_uuid="u", message_id="queued", audio=SECRET_AUDIO[::-1]))).job
    assert (await store.claim_next("w")).id == keep.id
    assert (await store.claim_next("w")).id == done.id
    await store.renew(done.id, "w", progress=0.5, partial_text=SECRET_TEXT[:30])
    assert await store.complete(done.id, "w", _transcript(SECRET_TEXT))
    assert await store.complete(keep.id, "w", _transcript("nothing to hide"))
    text, audio, queued_audio = SECRET_TEXT.encode(), SECRET_AUDIO[1000:1064], SECRET_AUDIO[::-1][1000:1064]
    # The search can see them before the deletion (else the test below could never fail).
    assert _files_contain(db, text) and _files_contain(db, audio) and _files_contain(db, queued_audio)

    await store.delete(done.id)
    await store.delete(queued.id)

    assert _files_contain(db, text) == []
    assert _files_contain(db, audio) == []
    assert _files_contain(db, queued_audio) == []
    assert _files_contain(db, b"nothing to hide")  # the neighbour is intact
    assert (await store.get(keep.id, with_transcript=True)).transcript.text == "nothing to hide"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_deletion_removes_the_rows_and_vacuums_the_tables(store, database_url):
    """The rows are gone for every session; VACUUM ran (it frees the TOASTed audio and transcript; the heap
    page's free space keeps a short text until reused or VACUUM FULL: docs/security.md)."""
    vacuums = "SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname = $1"
    before = await asyncio.to_thread(postgres.rows, database_url, vacuums, "jobs")
    job = (await store.submit(_job(user_uuid="u", message_id="m", audio=SECRET_AUDIO))).job
    assert [j.id for j in await store.delete_matching("u", "m")] == [job.id]
    for table, column in (("jobs", "id"), ("job_audio", "job_id")):
        count = f"SELECT count(*) FROM {table} WHERE {column} = $1"
        assert await asyncio.to_thread(postgres.rows, database_url, count, job.id) == [(0,)]
    after = await asyncio.to_thread(postgres.rows, database_url, vacuums, "jobs")
    assert after[0][0] > before[0][0]


async def test_deleting_a_running_job_stops_its_transcription_and_the_worker_takes_the_next(
    store: JobStore, settings, caplog: pytest.LogCaptureFixture
):
    """The worker learns of the deletion at its next lease renewal (refused), drops the job without writing
    anything or logging errors, its transcription thread stops at its next progress report, and the next job
    runs."""
    registry = await asyncio.to_thread(load_engines, settings)
    reports = 0
    for engine in registry.engines:
        real = engine.transcribe

        def endless(audio, language, progress=None, real=real):
            nonlocal reports
            if audio.size / 16_000 < 2.5:  # the next job: transcribed for real
                return real(audio, language, progress)
            for step in range(1000):  # 20 s of "work", reporting its progress
                reports += 1
                progress(step / 1000)
                time.sleep(0.02)
            return real(audio, language, progress)

        engine.transcribe = endless  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="wazo_stt")
    long_job = (await store.submit(NewJob(voicemail(3.0), 3.0, registry.default_id, "json"))).job
    pool = WorkerPool(store, lambda: registry, poll_seconds=0.05)
    pool.start()
    try:
        for _ in range(200):
            if reports > 5:
                break
            await asyncio.sleep(0.05)
        assert (await store.get(long_job.id)).status is JobStatus.PROCESSING
        await store.delete(long_job.id)
        next_job = (await store.submit(NewJob(voicemail(2.0), 2.0, registry.default_id, "json"))).job
        pool.notify()
        finished = await pool.wait_finished(next_job.id, timeout=30)
        assert finished.status is JobStatus.COMPLETED
        stopped_at = reports
        await asyncio.sleep(0.5)
        assert reports == stopped_at, "the deleted job's transcription thread is still running"
        assert await store.get(long_job.id) is None
    finally:
        await pool.stop(grace_seconds=5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "lease lost (deleted, or taken over" in caplog.text
