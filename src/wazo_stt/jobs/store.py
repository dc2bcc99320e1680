"""The persistent job queue: every accepted job, with its audio, lives in the database until it is finished.

The queue *is* the table: workers claim the next ``queued`` row in the fair order (round-robin across tenants
and senders, ``jobs/fair_order.py``), queue positions are counted in that same order, and a restart finds every
job exactly where it was. Audio sits in a table of its own so that status polls never read
blobs, and it is deleted as soon as the job is finished.

This module holds submission, reads, erasure and retention; what a worker does with a job under its lease
(claim, renew, complete, fail, release, and the take-back of dead workers' jobs) is in ``jobs/leases.py``, which
``JobStore`` inherits. Written once for SQLite and PostgreSQL; what differs is in ``jobs/database.py``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wazo_stt.domain import JobStatus
from wazo_stt.jobs.convert import to_job, transcript_from_json
from wazo_stt.jobs.database import DEFAULT_BUSY_TIMEOUT_MS, Database, DuplicateError
from wazo_stt.jobs.events import JobEvents, JobWatch
from wazo_stt.jobs.fair_order import position_of
from wazo_stt.jobs.leases import DEFAULT_LEASE_SECONDS, MAX_ATTEMPTS, LeaseTransitions
from wazo_stt.jobs.migrate import run_migrations
from wazo_stt.jobs.outbox import Outbox
from wazo_stt.jobs.records import Job, JobSnapshot, NewJob, QueueFullError, Submission
from wazo_stt.jobs.schema import AudioRow, JobRow

_PENDING = (JobStatus.QUEUED, JobStatus.PROCESSING)


class JobStore(LeaseTransitions):
    """All reads and writes of jobs. Async: SQL runs in the driver's thread (SQLite) or over the network."""

    def __init__(
        self,
        db: Database,
        max_queue_size: int,
        clock: Callable[[], float] = time.time,
        *,
        max_queue_audio_secs: float | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        poll_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self.max_queue_size = max_queue_size
        self.max_queue_audio_secs = max_queue_audio_secs
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self._clock = clock
        self.events = JobEvents(db, poll_seconds=poll_seconds)
        self.outbox = Outbox(db, clock)

    @classmethod
    async def open(
        cls,
        *,
        database_url: str | None = None,
        db_path: Path | None = None,
        max_queue_size: int,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        sqlite_synchronous: str = "FULL",
        **options: Any,
    ) -> JobStore:
        """Connect, migrate the schema (once, under a lock) and listen for other processes' changes."""
        db = Database.connect(
            database_url, db_path, busy_timeout_ms=busy_timeout_ms, sqlite_synchronous=sqlite_synchronous
        )
        try:
            await run_migrations(db)
        except BaseException:
            await db.close()
            raise
        store = cls(db, max_queue_size, clock, **options)
        store.events.start()
        return store

    @property
    def dialect(self) -> str:
        return "postgresql" if self._db.is_postgresql else "sqlite"

    async def close(self) -> None:
        await self.events.close()
        await self._db.close()

    # --- submission -------------------------------------------------------------------------------------

    async def submit(self, new: NewJob, *, force: bool = False) -> Submission:
        """Insert a job, or return the one already holding its ``(tenant, user_uuid, message_id)``; raises
        ``QueueFullError`` when ``max_queue_size`` jobs or ``max_queue_audio_secs`` of audio already wait.

        Uniqueness is the database's constraint, not a check-then-insert, so concurrent submissions of the same
        pair create exactly one job. A completed job of that pair is returned as it is (cached) unless ``force``;
        a *failed* one is replaced, forced or not (a resubmission is a retry); a job still queued or processing
        is returned as it is, since it will produce a fresh transcript anyway.
        """
        try:
            async with self._db.writing() as session:
                existing = await self._find_identity(session, new.tenant, new.user_uuid, new.message_id)
                if existing is not None:
                    if existing.status in _PENDING or (existing.status == JobStatus.COMPLETED and not force):
                        return Submission(to_job(existing), created=False)
                    await session.execute(delete(JobRow).where(JobRow.id == existing.id))
                queued, queued_secs = (
                    await session.execute(
                        select(func.count(), func.coalesce(func.sum(JobRow.audio_duration), 0.0)).where(
                            JobRow.status == JobStatus.QUEUED
                        )
                    )
                ).one()
                if queued >= self.max_queue_size:
                    raise QueueFullError
                # Audio seconds too, so a few huge files cannot fill the queue; an empty queue takes any file
                # that passed MAX_AUDIO_DURATION_SECS.
                cap = self.max_queue_audio_secs
                if cap is not None and queued and queued_secs + new.audio_duration > cap:
                    raise QueueFullError(audio=True)
                row = JobRow(
                    id=str(uuid.uuid4()),
                    tenant=new.tenant,
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
                session.add(AudioRow(job_id=row.id, data=new.audio))
                position = await session.scalar(select(position_of(row.seq)))
                await self._db.announce(session, row.id, queued=True)
        except DuplicateError:
            # Another request inserted the same pair between our read and our insert: theirs is the job.
            return await self._existing_after_race(new)
        self.events.publish(row.id, queued=True)
        return Submission(to_job(row), created=True, queue_position=position)

    async def _existing_after_race(self, new: NewJob) -> Submission:
        async with self._db.reading() as session:
            existing = await self._find_identity(session, new.tenant, new.user_uuid, new.message_id)
            assert existing is not None, "unique constraint fired but no row holds the pair"
            return Submission(to_job(existing), created=False)

    @staticmethod
    async def _find_identity(
        session: AsyncSession, tenant: str | None, user_uuid: str | None, message_id: str | None
    ) -> JobRow | None:
        if user_uuid is None or message_id is None:
            return None
        query = select(JobRow).where(JobRow.user_uuid == user_uuid, JobRow.message_id == message_id)
        return await session.scalar(_scoped(query, tenant).order_by(JobRow.seq.desc()).limit(1))

    # --- reads (tenant=None: every tenant, for operators) ---------------------------------------------------

    async def get(self, job_id: str, *, tenant: str | None = None, with_transcript: bool = False) -> Job | None:
        async with self._db.reading() as session:
            row = await session.scalar(_scoped(select(JobRow).where(JobRow.id == job_id), tenant))
        if row is None:
            return None
        return to_job(row, await transcript_from_json(row.transcript) if with_transcript else None)

    async def lookup(self, user_uuid: str, message_id: str, *, tenant: str | None = None) -> Job | None:
        async with self._db.reading() as session:
            row = await self._find_identity(session, tenant, user_uuid, message_id)
        return None if row is None else to_job(row)

    async def snapshot(self, job_id: str, *, tenant: str | None = None) -> JobSnapshot | None:
        """The job, its queue position and its progress from ONE statement, so they agree: never ``queued``
        without a position, never a position of a job a worker already holds."""
        # Only a queued job's position is computed (it sorts the queue): CASE evaluates the subquery on demand.
        position = case((JobRow.status == JobStatus.QUEUED, position_of(JobRow.seq).correlate(JobRow)))
        query = _scoped(select(JobRow, position).where(JobRow.id == job_id), tenant)
        async with self._db.reading() as session:
            found = (await session.execute(query)).first()
        if found is None:
            return None
        row, queue_position = found
        return JobSnapshot(to_job(row), queue_position if row.status == JobStatus.QUEUED else None)

    async def queue_position(self, job_id: str, *, tenant: str | None = None) -> int | None:
        """1 for the next job to run; None when the job is not queued."""
        snapshot = await self.snapshot(job_id, tenant=tenant)
        return None if snapshot is None else snapshot.queue_position

    async def counts(self, *, tenant: str | None = None) -> dict[str, int]:
        query = _scoped(select(JobRow.status, func.count()).group_by(JobRow.status), tenant)
        async with self._db.reading() as session:
            by_status = {status: n for status, n in (await session.execute(query)).all()}
        return {status.value: by_status.get(status.value, 0) for status in JobStatus}

    async def oldest_queued_at(self) -> float | None:
        """When the oldest queued job was submitted (None: the queue is empty), for the queue-age metric."""
        async with self._db.reading() as session:
            return await session.scalar(select(func.min(JobRow.created_at)).where(JobRow.status == JobStatus.QUEUED))

    async def audio(self, job_id: str) -> bytes | None:
        async with self._db.reading() as session:
            return await session.scalar(select(AudioRow.data).where(AudioRow.job_id == job_id))

    def watch(self, job_id: str) -> contextlib.AbstractContextManager[JobWatch]:
        """``with store.watch(id) as w:`` read the job, then ``await w.wait(timeout)`` until it changes (in any
        process), read again... Register before the first read so no change is missed."""
        return self.events.watch(job_id)

    async def wait_changed(self, job_id: str, timeout: float) -> bool:
        """Wait until the job changes in any process (True), or up to ``timeout`` (False)."""
        return await self.events.wait_changed(job_id, timeout)

    # --- erasure (tenant=None: every tenant, for operators) -------------------------------------------------

    async def delete(self, job_id: str, *, tenant: str | None = None) -> Job | None:
        """Erase one job: its row, audio and text, from the database files too. Returns the job as it was (None:
        no such job in ``tenant``). A running job's worker learns it at its next lease renewal, which is refused."""
        deleted = await self._erase(JobRow.id == job_id, tenant=tenant)
        return deleted[0] if deleted else None

    async def delete_matching(
        self, user_uuid: str, message_id: str | None = None, *, tenant: str | None = None
    ) -> list[Job]:
        """Erase the job of a ``(user_uuid, message_id)`` pair, or every job of ``user_uuid`` (GDPR erasure of a
        user who left), in ``tenant``. Returns the jobs as they were."""
        where = JobRow.user_uuid == user_uuid
        if message_id is not None:
            where = where & (JobRow.message_id == message_id)
        return await self._erase(where, tenant=tenant)

    async def _erase(self, where: Any, *, tenant: str | None) -> list[Job]:
        async with self._db.writing() as session:
            rows = list(await session.scalars(_scoped(select(JobRow).where(where), tenant).with_for_update()))
            ids = [row.id for row in rows]
            if ids:
                await session.execute(delete(AudioRow).where(AudioRow.job_id.in_(ids)))
                await session.execute(delete(JobRow).where(JobRow.id.in_(ids)))
                for job_id in ids:
                    await self._db.announce(session, job_id)
        if ids:
            for job_id in ids:  # waiters (synchronous requests, event streams) look again and find no job
                self.events.publish(job_id)
            await self._db.erase_traces()
        return [to_job(row) for row in rows]

    # --- retention ----------------------------------------------------------------------------------------

    async def purge_older_than(self, days: int) -> int:
        """Delete finished jobs (and so their transcript text) older than ``days``. Returns how many.

        One server at a time: the others skip the round (advisory lock on PostgreSQL)."""
        cutoff = self._clock() - days * 86400
        async with self._db.writing() as session:
            if not await self._db.try_exclusive(session, "retention"):
                return 0
            result = await session.execute(
                delete(JobRow).where(
                    JobRow.status.in_((JobStatus.COMPLETED, JobStatus.FAILED)), JobRow.finished_at < cutoff
                )
            )
        if result.rowcount:
            await self._db.erase_traces()
        return result.rowcount or 0


def _scoped(query: Any, tenant: str | None) -> Any:
    return query if tenant is None else query.where(JobRow.tenant == tenant)
