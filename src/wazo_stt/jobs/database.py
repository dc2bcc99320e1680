"""The dialect seam: engines, connections and errors for SQLite and PostgreSQL. Everything dialect-specific in the
job store lives here (PRAGMAs, ``BEGIN IMMEDIATE``, advisory locks, ``NOTIFY``); the queue operations
(``jobs/store.py``, ``jobs/leases.py``) are written once for both.

- SQLite (the embedded default, ``DB_PATH``): WAL, one writer connection whose every transaction opens with
  ``BEGIN IMMEDIATE`` (the write lock from the first statement, so the reads a write depends on see the state it
  lands on), a pool of reader connections that WAL never blocks.
- PostgreSQL (``DATABASE_URL=postgresql+asyncpg://…``): one pool for reads and writes; claims use
  ``FOR UPDATE SKIP LOCKED``; a change to a job is announced with ``NOTIFY`` in the transaction that makes it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from wazo_stt.jobs.records import StoreUnavailableError
from wazo_stt.jobs.schema import Base

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 10_000
# The channel on which PostgreSQL announces job changes (payload: the job id).
NOTIFY_CHANNEL = "wazo_stt_jobs"


class DuplicateError(Exception):
    """A unique constraint refused a write (inside the jobs package only: submit turns it into an answer)."""


def advisory_key(name: str) -> int:
    """A stable 32-bit key for pg_advisory_lock, from a readable name."""
    return zlib.crc32(f"wazo-stt:{name}".encode())


class Database:
    """Engines and sessions of one job database, and what differs between the dialects."""

    def __init__(self, url: str, reader: AsyncEngine, writer: AsyncEngine, *, busy_timeout_ms: int) -> None:
        self.url = url
        self.reader = reader
        self.writer = writer
        self.busy_timeout_ms = busy_timeout_ms
        self.is_postgresql = reader.dialect.name == "postgresql"
        self._sessions = async_sessionmaker(reader, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(writer, expire_on_commit=False)

    @classmethod
    def connect(
        cls,
        database_url: str | None = None,
        db_path: Path | None = None,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        sqlite_synchronous: str = "FULL",
    ) -> Database:
        """``database_url`` when given (PostgreSQL or SQLite), else SQLite at ``db_path``. Connects lazily."""
        if database_url:
            url = make_url(database_url)
            if url.get_backend_name() == "postgresql":
                return cls._postgresql(url.set(drivername="postgresql+asyncpg"), busy_timeout_ms)
            if url.get_backend_name() != "sqlite" or not url.database:
                raise ValueError(f"DATABASE_URL must be postgresql+asyncpg://… or sqlite:///PATH, not {url!r}")
            db_path = Path(url.database)
        if db_path is None:
            raise ValueError("either DATABASE_URL or DB_PATH is needed")
        return cls._sqlite(db_path, busy_timeout_ms, sqlite_synchronous)

    @classmethod
    def _postgresql(cls, url: Any, busy_timeout_ms: int) -> Database:
        # lock_timeout bounds how long a statement waits for a row or table lock, as busy_timeout does on SQLite.
        engine = create_async_engine(
            url,
            pool_size=5,
            max_overflow=10,
            pool_pre_ping=True,
            pool_timeout=max(busy_timeout_ms / 1000, 1),
            connect_args={"server_settings": {"lock_timeout": str(busy_timeout_ms), "application_name": "wazo-stt"}},
        )
        return cls(url.render_as_string(hide_password=False), engine, engine, busy_timeout_ms=busy_timeout_ms)

    @classmethod
    def _sqlite(cls, db_path: Path, busy_timeout_ms: int, synchronous: str) -> Database:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite+aiosqlite:///{db_path}"
        pragmas = functools.partial(_sqlite_pragmas, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous)
        reader = create_async_engine(url)
        event.listen(reader.sync_engine, "connect", pragmas)
        writer = create_async_engine(url, pool_size=1, max_overflow=0)
        event.listen(writer.sync_engine, "connect", pragmas)
        _immediate_transactions(writer)
        return cls(url, reader, writer, busy_timeout_ms=busy_timeout_ms)

    async def close(self) -> None:
        await self.reader.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()

    # --- sessions, with the store's own errors ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        async with _translated(), self._sessions() as session:
            yield session

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """One write transaction, committed at the end of the block (SQLite: holding the write lock)."""
        async with _translated(), self._write_sessions() as session, session.begin():
            yield session

    # --- what only PostgreSQL has -------------------------------------------------------------------------

    async def announce(self, session: AsyncSession, job_id: str, *, queued: bool = False) -> None:
        """Tell every listening process that a job changed (``queued``: it waits for a worker now): delivered at
        commit, dropped on rollback. The payload is the job id, followed by `` queued`` when it is."""
        if self.is_postgresql:
            notify = select(text("pg_notify(:channel, :payload)"))
            payload = f"{job_id} queued" if queued else job_id
            await session.execute(notify, {"channel": NOTIFY_CHANNEL, "payload": payload})

    async def try_exclusive(self, session: AsyncSession, name: str) -> bool:
        """Whether this transaction may do the once-per-cluster task ``name`` (retention): a transaction-scoped
        advisory lock on PostgreSQL; on SQLite the write lock the transaction holds already serialises it."""
        if not self.is_postgresql:
            return True
        return bool(await session.scalar(select(text("pg_try_advisory_xact_lock(:key)")), {"key": advisory_key(name)}))

    async def serialise(self, session: AsyncSession, name: str) -> None:
        """Hold ``name`` until this transaction ends, waiting for another holder: a transaction-scoped advisory
        lock on PostgreSQL (bounded by ``lock_timeout``); on SQLite the write lock already serialises writers."""
        if self.is_postgresql:
            await session.execute(select(text("pg_advisory_xact_lock(:key)")), {"key": advisory_key(name)})

    async def upsert(self, session: AsyncSession, table: Any, values: dict[str, Any], keys: list[str]) -> None:
        """Insert a row, or update the row with the same ``keys`` (``INSERT … ON CONFLICT DO UPDATE``)."""
        insert = postgresql.insert if self.is_postgresql else sqlite.insert
        statement = insert(table).values(**values)
        updates = {name: statement.excluded[name] for name in values if name not in keys}
        await session.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates))

    # --- erasure ------------------------------------------------------------------------------------------

    async def erase_traces(self) -> bool:
        """After rows were deleted: remove what the database files still hold of them, as far as the dialect can.
        Returns False when it could not (logged; the rows are deleted all the same).

        - SQLite: ``secure_delete`` (set on every connection) has zeroed the deleted cells and freed pages in the
          pages the deletion wrote, but the WAL still holds the *earlier* images of those pages (the text as it
          was written). A ``TRUNCATE`` checkpoint copies the zeroed pages into the database file and empties the
          WAL. It waits (busy timeout) for readers still on an older snapshot; when one outlasts it, the old
          images stay in the WAL until the next checkpoint that completes.
        - PostgreSQL: a DELETE only marks the row dead (MVCC). A plain ``VACUUM`` of the job tables frees the
          TOASTed values (audio, long transcripts) and the row's space for reuse without blocking other
          sessions; it does not rewrite heap pages, so a short text may stay in a page's free space until the
          page is reused or the table is rewritten (``VACUUM FULL``): see docs/security.md.
        """
        try:
            if self.is_postgresql:
                async with self.writer.connect() as conn:
                    auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await auto.exec_driver_sql(f"VACUUM {', '.join(t.name for t in Base.metadata.sorted_tables)}")
                return True
            # A reader connection: it opens no transaction around a PRAGMA (the writer's would: BEGIN IMMEDIATE).
            async with self.reader.connect() as conn:
                busy, _, _ = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("Deleted rows may leave traces in the database files until the next vacuum: %s", exc)
            return False
        if busy:
            log.warning("Deleted rows stay in the SQLite WAL until its next checkpoint: a reader held it too long")
        return not busy

    def asyncpg_dsn(self) -> str:
        """The URL for a raw asyncpg connection (LISTEN needs one of its own, outside the pool)."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except IntegrityError as exc:
        raise DuplicateError(str(exc.orig)) from exc
    except (SQLAlchemyError, OSError) as exc:  # OSError: the server cannot be reached at all
        raise StoreUnavailableError(str(getattr(exc, "orig", None) or exc)) from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_timeout_ms: int, synchronous: str) -> None:
    # WAL lets status polls read while the worker writes; the busy timeout rides out short write contention
    # (another process, a checkpoint) instead of failing at once with "database is locked". synchronous=FULL
    # syncs the WAL at every commit, so a job accepted survives a power loss (NORMAL would lose the last ones).
    # secure_delete zeroes deleted content (a finished job's audio, an erased job's text) instead of leaving it
    # in free space, so that `strings` on the file finds nothing of it (docs/security.md, erasure).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _immediate_transactions(engine: AsyncEngine) -> None:
    """Every transaction of ``engine`` opens with ``BEGIN IMMEDIATE``: the driver's own (deferred) BEGIN is
    turned off, and the write lock, with its busy timeout, is taken by the first statement."""

    def no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    def begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine.sync_engine, "connect", no_driver_transactions)
    event.listen(engine.sync_engine, "begin", begin_immediate)
