"""The persistent job queue: every accepted job, with its audio, lives in SQLite until it is finished.

The queue *is* the table: workers claim the oldest ``queued`` row, queue positions are counted from it, and a
restart finds every job exactly where it was. Audio sits in a table of its own so that status polls never
read blobs, and it is deleted as soon as the job is finished.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, aliased, mapped_column

from wazo_stt.domain import JobStatus, Transcript


class _Base(DeclarativeBase):
    pass


class _JobRow(_Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("user_uuid", "message_id", name="uq_jobs_identity"),)

    # ``seq`` orders the queue; ``id`` is what clients see.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    user_uuid: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)  # file name, or the URL with its query string redacted
    model: Mapped[str] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    response_format: Mapped[str] = mapped_column(String(16))
    granularities: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    audio_duration: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[str | None] = mapped_column(Text)  # Transcript as JSON: segments and words included
    error: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)  # where the webhook goes when the job ends (full URL)


class _AudioRow(_Base):
    __tablename__ = "job_audio"

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxRow(_Base):
    """A webhook event waiting for (or done with) delivery: written in the transaction that finishes its job,
    so a finished job always has its event, whatever happens to the process next (``jobs/outbox.py``)."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # webhook-id: the same on every retry
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed (gave up)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    locked_until: Mapped[float | None] = mapped_column(Float)  # a process is delivering it until then
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[float | None] = mapped_column(Float)


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the rest of the program sees it (no ORM object escapes this module)."""

    id: str
    status: JobStatus
    user_uuid: str | None
    message_id: str | None
    source: str | None
    model: str
    language: str | None
    response_format: str
    granularities: tuple[str, ...]
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    audio_duration: float | None
    text: str | None
    error: str | None
    transcript: Transcript | None = None
    callback_url: str | None = None

    @property
    def has_identity(self) -> bool:
        return self.user_uuid is not None


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a submission asks for."""

    audio: bytes
    audio_duration: float
    model: str
    response_format: str
    language: str | None = None
    granularities: tuple[str, ...] = ()
    user_uuid: str | None = None
    message_id: str | None = None
    source: str | None = None
    callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    job: Job
    created: bool  # False: the (user_uuid, message_id) pair already had a job, which is returned instead
    # A new job's place in the queue when it was accepted (counted in the inserting transaction): a worker may
    # take it before the response is written, and the client must still be told where it was queued.
    queue_position: int | None = None


class QueueFullError(Exception):
    pass


def _to_job(row: _JobRow, *, with_transcript: bool = False) -> Job:
    transcript = None
    if with_transcript and row.transcript:
        transcript = Transcript.from_dict(json.loads(row.transcript))
    return Job(
        id=row.id,
        status=JobStatus(row.status),
        user_uuid=row.user_uuid,
        message_id=row.message_id,
        source=row.source,
        model=row.model,
        language=row.language,
        response_format=row.response_format,
        granularities=tuple(g for g in row.granularities.split(",") if g),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
        audio_duration=row.audio_duration,
        text=row.text,
        error=row.error,
        transcript=transcript,
        callback_url=row.callback_url,
    )


DEFAULT_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_timeout_ms: int) -> None:
    # WAL lets status polls read while the worker writes; the busy timeout rides out short write contention
    # (another process, a checkpoint) instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _writer_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the driver, which would only BEGIN (deferred) before the first write:
    # _begin_immediate then opens every write transaction itself.
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Any) -> None:
    # The write lock from the first statement: the reads a write depends on (is the pair known? is the queue
    # full?) see the state the write lands on, and waiting for the lock goes through the busy timeout.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class JobStore:
    """All reads and writes of jobs. Async: SQLite work runs in aiosqlite's thread, never on the event loop.

    Writes go through one connection of their own (``writer``): they queue for it in the process, in order,
    instead of polling SQLite's lock, and each write transaction holds the lock from its first read. Reads
    use a pool of other connections, which WAL never blocks.
    """

    def __init__(
        self, engine: AsyncEngine, max_queue_size: int, clock=time.time, *, writer: AsyncEngine | None = None
    ) -> None:
        self._engine = engine
        self._writer = writer or engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self._writer, expire_on_commit=False)
        self.max_queue_size = max_queue_size
        self._clock = clock

    @classmethod
    def for_sqlite(
        cls,
        db_path: Path,
        max_queue_size: int,
        clock=time.time,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> JobStore:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite+aiosqlite:///{db_path}"
        pragmas = functools.partial(_sqlite_pragmas, busy_timeout_ms=busy_timeout_ms)
        reader = create_async_engine(url)
        event.listen(reader.sync_engine, "connect", pragmas)
        writer = create_async_engine(url, pool_size=1, max_overflow=0)
        event.listen(writer.sync_engine, "connect", pragmas)
        event.listen(writer.sync_engine, "connect", _writer_connection)
        event.listen(writer.sync_engine, "begin", _begin_immediate)
        return cls(reader, max_queue_size, clock, writer=writer)

    async def create_schema(self) -> None:
        async with self._writer.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)

    async def close(self) -> None:
        await self._engine.dispose()
        if self._writer is not self._engine:
            await self._writer.dispose()

    def _session(self) -> AsyncSession:
        return self._sessions()

    def _write_session(self) -> AsyncSession:
        return self._write_sessions()

    # --- submission -------------------------------------------------------------------------------------

    async def submit(self, new: NewJob, *, force: bool = False) -> Submission:
        """Insert a job, or return the one already holding its ``(user_uuid, message_id)``.

        Uniqueness is the database's constraint, not a check-then-insert, so concurrent submissions of the same
        pair create exactly one job. With ``force``, a finished job of that pair is replaced; a job still queued
        or processing is returned as it is, since it will produce a fresh transcript anyway.
        """
        try:
            async with self._write_session() as session, session.begin():
                existing = await self._find_identity(session, new.user_uuid, new.message_id)
                if existing is not None:
                    if not force or existing.status in (JobStatus.QUEUED, JobStatus.PROCESSING):
                        return Submission(_to_job(existing), created=False)
                    await session.execute(delete(_JobRow).where(_JobRow.id == existing.id))
                queued = await session.scalar(
                    select(func.count()).select_from(_JobRow).where(_JobRow.status == JobStatus.QUEUED)
                )
                if queued >= self.max_queue_size:
                    raise QueueFullError
                row = _JobRow(
                    id=str(uuid.uuid4()),
                    status=JobStatus.QUEUED,
                    user_uuid=new.user_uuid,
                    message_id=new.message_id,
                    source=new.source,
                    model=new.model,
                    language=new.language,
                    response_format=new.response_format,
                    granularities=",".join(new.granularities),
                    created_at=self._clock(),
                    attempts=0,
                    audio_duration=new.audio_duration,
                    callback_url=new.callback_url,
                )
                session.add(row)
                await session.flush()
                session.add(_AudioRow(job_id=row.id, data=new.audio))
        except IntegrityError:
            # Another request inserted the same pair between our read and our insert: theirs is the job.
            return await self._existing_after_race(new)
        return Submission(_to_job(row), created=True, queue_position=queued + 1)

    async def _existing_after_race(self, new: NewJob) -> Submission:
        async with self._session() as session:
            existing = await self._find_identity(session, new.user_uuid, new.message_id)
            assert existing is not None, "unique constraint fired but no row holds the pair"
            return Submission(_to_job(existing), created=False)

    @staticmethod
    async def _find_identity(session: AsyncSession, user_uuid: str | None, message_id: str | None):
        if user_uuid is None or message_id is None:
            return None
        return await session.scalar(
            select(_JobRow).where(_JobRow.user_uuid == user_uuid, _JobRow.message_id == message_id)
        )

    # --- reads --------------------------------------------------------------------------------------------

    async def get(self, job_id: str, *, with_transcript: bool = False) -> Job | None:
        async with self._session() as session:
            row = await session.scalar(select(_JobRow).where(_JobRow.id == job_id))
            return None if row is None else _to_job(row, with_transcript=with_transcript)

    async def lookup(self, user_uuid: str, message_id: str) -> Job | None:
        async with self._session() as session:
            row = await self._find_identity(session, user_uuid, message_id)
            return None if row is None else _to_job(row)

    async def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to run; None when the job is not queued."""
        # One statement, so one snapshot: two reads could see the job queued, then a worker take it (position 0).
        own = aliased(_JobRow)
        own_seq = select(own.seq).where(own.id == job_id, own.status == JobStatus.QUEUED).scalar_subquery()
        ahead = select(func.count()).where(_JobRow.status == JobStatus.QUEUED, _JobRow.seq <= own_seq)
        async with self._session() as session:
            position = await session.scalar(ahead)
        return position or None

    async def counts(self) -> dict[str, int]:
        async with self._session() as session:
            rows = await session.execute(select(_JobRow.status, func.count()).group_by(_JobRow.status))
            by_status = {status: n for status, n in rows.all()}
        return {status.value: by_status.get(status.value, 0) for status in JobStatus}

    async def oldest_queued_at(self) -> float | None:
        """When the oldest queued job was submitted (None: the queue is empty), for the queue-age metric."""
        async with self._session() as session:
            return await session.scalar(select(func.min(_JobRow.created_at)).where(_JobRow.status == JobStatus.QUEUED))

    async def audio(self, job_id: str) -> bytes | None:
        async with self._session() as session:
            return await session.scalar(select(_AudioRow.data).where(_AudioRow.job_id == job_id))

    # --- worker transitions -----------------------------------------------------------------------------

    async def claim_next(self) -> Job | None:
        """Atomically move the oldest queued job to ``processing`` and return it."""
        async with self._write_session() as session, session.begin():
            oldest = (
                select(_JobRow.seq)
                .where(_JobRow.status == JobStatus.QUEUED)
                .order_by(_JobRow.seq)
                .limit(1)
                .scalar_subquery()
            )
            row = await session.scalar(
                update(_JobRow)
                .where(_JobRow.seq == oldest, _JobRow.status == JobStatus.QUEUED)
                .values(status=JobStatus.PROCESSING, started_at=self._clock(), attempts=_JobRow.attempts + 1)
                .returning(_JobRow)
            )
            return None if row is None else _to_job(row)

    async def complete(self, job_id: str, transcript: Transcript) -> None:
        await self._finish(
            job_id,
            status=JobStatus.COMPLETED,
            text=transcript.text,
            transcript=json.dumps(transcript.to_dict(), ensure_ascii=False),
            audio_duration=transcript.duration,
        )

    async def fail(self, job_id: str, error: str) -> None:
        await self._finish(job_id, status=JobStatus.FAILED, error=error)

    async def _finish(self, job_id: str, **values: Any) -> None:
        async with self._write_session() as session, session.begin():
            await session.execute(
                update(_JobRow).where(_JobRow.id == job_id).values(finished_at=self._clock(), **values)
            )
            await session.execute(delete(_AudioRow).where(_AudioRow.job_id == job_id))
            await self._enqueue_webhooks(session, [job_id])

    async def _enqueue_webhooks(self, session: AsyncSession, job_ids: list[str]) -> None:
        """Write the webhook event of each finished job that has a callback URL, in the finishing transaction."""
        rows = await session.execute(
            select(_JobRow.id, _JobRow.callback_url, _JobRow.status).where(
                _JobRow.id.in_(job_ids), _JobRow.callback_url.is_not(None)
            )
        )
        now = self._clock()
        for job_id, url, status in rows.all():
            session.add(
                OutboxRow(
                    id=f"msg_{uuid.uuid4().hex}",
                    job_id=job_id,
                    url=url,
                    event_type=f"transcription.{status}",
                    status="pending",
                    created_at=now,
                    next_attempt_at=now,
                    attempts=0,
                )
            )

    async def release(self, job_id: str) -> bool:
        """Put a job this process was transcribing back in the queue, its attempt not counted.

        For a graceful stop that could not wait for the job: the job did nothing wrong, so it keeps its place
        (the queue is ordered by submission) and its attempts. Only a job still ``processing`` is touched, so a
        release racing the job's own completion changes nothing. Returns whether the job was released.
        """
        async with self._write_session() as session, session.begin():
            result = await session.execute(
                update(_JobRow)
                .where(_JobRow.id == job_id, _JobRow.status == JobStatus.PROCESSING)
                .values(status=JobStatus.QUEUED, started_at=None, attempts=func.max(_JobRow.attempts - 1, 0))
            )
        return bool(result.rowcount)

    async def requeue_interrupted(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """At start-up: jobs left ``processing`` by a dead process go back to the queue, or fail for good.

        Returns the ids re-queued and the ids failed.
        """
        async with self._write_session() as session, session.begin():
            rows = (await session.scalars(select(_JobRow).where(_JobRow.status == JobStatus.PROCESSING))).all()
            requeued = [r.id for r in rows if r.attempts < max_attempts]
            failed = [r.id for r in rows if r.attempts >= max_attempts]
            if requeued:
                await session.execute(
                    update(_JobRow).where(_JobRow.id.in_(requeued)).values(status=JobStatus.QUEUED, started_at=None)
                )
            if failed:
                await session.execute(
                    update(_JobRow)
                    .where(_JobRow.id.in_(failed))
                    .values(
                        status=JobStatus.FAILED,
                        finished_at=self._clock(),
                        error=f"The server stopped while transcribing this job {max_attempts} times; giving up",
                    )
                )
                await session.execute(delete(_AudioRow).where(_AudioRow.job_id.in_(failed)))
                await self._enqueue_webhooks(session, failed)
        return requeued, failed

    async def purge_older_than(self, days: int) -> int:
        """Delete finished jobs (and so their transcript text) older than ``days``. Returns how many."""
        cutoff = self._clock() - days * 86400
        async with self._write_session() as session, session.begin():
            result = await session.execute(
                delete(_JobRow).where(
                    _JobRow.status.in_((JobStatus.COMPLETED, JobStatus.FAILED)), _JobRow.finished_at < cutoff
                )
            )
        return result.rowcount or 0
