"""Schema migrations: run once at start-up under a lock, on SQLite and PostgreSQL; the first release's SQLite
database upgrades in place; the ORM schema is what the migrations build."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from tests.support import postgres
from tests.test_store import TRANSCRIPT
from wazo_stt.domain import JobStatus
from wazo_stt.jobs.migrate import alembic_config
from wazo_stt.jobs.records import NewJob
from wazo_stt.jobs.schema import Base
from wazo_stt.jobs.store import JobStore

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

# The schema the first release made with create_all (no alembic_version table).
FIRST_RELEASE_SCHEMA = """
CREATE TABLE jobs (
    seq INTEGER NOT NULL, id VARCHAR(36) NOT NULL, status VARCHAR(16) NOT NULL, user_uuid TEXT, message_id TEXT,
    source TEXT, model VARCHAR(64) NOT NULL, language VARCHAR(8), response_format VARCHAR(16) NOT NULL,
    granularities VARCHAR(32) NOT NULL, created_at FLOAT NOT NULL, started_at FLOAT, finished_at FLOAT,
    attempts INTEGER NOT NULL, audio_duration FLOAT, text TEXT, transcript TEXT, error TEXT,
    PRIMARY KEY (seq), CONSTRAINT uq_jobs_identity UNIQUE (user_uuid, message_id));
CREATE UNIQUE INDEX ix_jobs_id ON jobs (id);
CREATE INDEX ix_jobs_status ON jobs (status);
CREATE TABLE job_audio (job_id VARCHAR(36) NOT NULL, data BLOB NOT NULL, PRIMARY KEY (job_id),
    FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE);
"""


def _first_release_db(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_RELEASE_SCHEMA)
        job = "INSERT INTO jobs VALUES (?, ?, ?, 'u', ?, NULL, 'm', NULL, 'json', '', 1.0, NULL, NULL, ?, 1.0, ?, NULL, NULL)"  # noqa: E501
        conn.execute(job, (1, "done", "completed", "m1", 1, "old text"))
        conn.execute(job, (2, "running", "processing", "m2", 1, None))
        conn.execute(job, (3, "waiting", "queued", "m3", 0, None))
        conn.executemany("INSERT INTO job_audio VALUES (?, ?)", [("running", b"a2"), ("waiting", b"a3")])


async def test_the_first_release_sqlite_database_upgrades_in_place(tmp_path):
    db = tmp_path / "data" / "transcriptions.db"
    _first_release_db(db)
    store = await JobStore.open(db_path=db, max_queue_size=5)
    try:
        assert (await store.get("done")).text == "old text"
        # Left 'processing' by the old server: taken back by the first claim, its attempt counted.
        claimed = await store.claim_next("w")
        assert (claimed.id, claimed.attempts) == ("running", 2)
        assert await store.audio("running") == b"a2"
        assert (await store.claim_next("w")).id == "waiting"
        assert await store.complete("waiting", "w", TRANSCRIPT)
        # The identity is per tenant now: the same pair in another tenant is another job.
        other = await store.submit(NewJob(b"x", 1.0, "m", "json", user_uuid="u", message_id="m1", tenant="t2"))
        assert other.created
        assert (await store.lookup("u", "m1", tenant="")).id == "done"
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT job_id FROM job_audio WHERE job_id != ?", (other.job.id,)).fetchall() == [
            ("running",)  # still needed; the finished job's audio is gone
        ]


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    reason = postgres.unreachable_reason()
    if reason:
        pytest.skip(reason)
    with postgres.fresh_database() as url:
        yield url


async def test_stores_opened_at_once_on_a_fresh_database_migrate_once(fresh_url):
    stores = await asyncio.gather(*(JobStore.open(database_url=fresh_url, max_queue_size=5) for _ in range(4)))
    try:
        job = (await stores[0].submit(NewJob(b"x", 1.0, "m", "json"))).job
        assert (await stores[3].get(job.id)).status is JobStatus.QUEUED
        async with stores[1]._db.reading() as session:
            versions = (await session.execute(_text("SELECT version_num FROM alembic_version"))).all()
        assert versions == [(HEAD,)]
    finally:
        for store in stores:
            await store.close()


async def test_the_orm_schema_is_what_the_migrations_build(fresh_url):
    """jobs/schema.py and the migrations must agree (a new migration without its ORM change, or the reverse)."""
    store = await JobStore.open(database_url=fresh_url, max_queue_size=5)
    try:
        async with store._db.writer.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    finally:
        await store.close()
    assert diff == []


def _text(sql: str):
    from sqlalchemy import text

    return text(sql)
