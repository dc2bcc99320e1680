"""Bring the database to the latest schema at start-up, once, whoever starts first.

Alembic's scripts live in ``jobs/migrations`` (shipped in the package). They run programmatically, under a lock,
so that servers and workers started at the same moment on a fresh database migrate once and the others find the
work done: a session advisory lock on PostgreSQL, the write lock (``BEGIN IMMEDIATE``) on SQLite. A SQLite
database made by the first release (tables from ``create_all``, no ``alembic_version``) is adapted in place by
the first migration.

Adding a migration: ``alembic -c src/wazo_stt/jobs/migrations/alembic.ini revision -m "what"`` (or copy the
newest file in ``versions/``), write ``upgrade()`` for both dialects (``op.batch_alter_table`` where SQLite cannot
ALTER), update ``jobs/schema.py`` to match, and run ``pytest tests/test_store_migrations.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from wazo_stt.jobs.database import Database, _translated, advisory_key

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# A migration that copies a big SQLite table may hold the write lock a while: others wait this long for it.
SQLITE_MIGRATION_WAIT_MS = 120_000


# Alembic keeps its context in module globals: two migrations of one process must not interleave, whatever the
# database lock says (one lock per event loop).
_IN_PROCESS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def alembic_config(connection: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(sync_connection: Any, revision: str) -> None:
    before = MigrationContext.configure(sync_connection).get_current_revision()
    command.upgrade(alembic_config(sync_connection), revision)
    after = MigrationContext.configure(sync_connection).get_current_revision()
    if after != before:
        # Once per database: whoever holds the lock migrates, the others find it done and say nothing.
        log.info("Job database schema migrated from %s to %s", before or "nothing", after)


async def run_migrations(db: Database, revision: str = "head") -> None:
    lock = _IN_PROCESS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, _translated():
        if db.is_postgresql:
            await _migrate_postgresql(db, revision)
        else:
            await _migrate_sqlite(db, revision)


async def _migrate_postgresql(db: Database, revision: str) -> None:
    key = advisory_key("migrations")
    async with db.writer.connect() as conn:
        await conn.execute(select(text("pg_advisory_lock(:key)")), {"key": key})
        await conn.commit()
        try:
            await conn.run_sync(_upgrade, revision)
            await conn.commit()
        finally:
            await conn.execute(select(text("pg_advisory_unlock(:key)")), {"key": key})
            await conn.commit()


async def _migrate_sqlite(db: Database, revision: str) -> None:
    # A connection of its own: foreign keys off (rebuilding the jobs table must not cascade to the audio) and
    # BEGIN IMMEDIATE, so a second process waits for the first to finish rather than migrating in parallel.
    engine = create_async_engine(db.url, pool_size=1, max_overflow=0)
    event.listen(engine.sync_engine, "connect", functools.partial(_migration_pragmas))
    event.listen(engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


def _migration_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_MIGRATION_WAIT_MS}")
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()
