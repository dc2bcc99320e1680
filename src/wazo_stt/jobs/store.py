"""The persistent job queue: every accepted job, with its audio, lives in the database until it is finished.

The queue *is* the table: workers claim the next ``queued`` row in the fair order (round-robin across tenants
and senders, ``jobs/fair_order.py``), queue positions are counted in that same order, and a restart finds every
job exactly where it was. Audio sits in a table of its own so that status polls never read
blobs, and it is deleted as soon as the job is finished.

A claimed job carries a **lease**: its worker's id and an expiry the worker renews while it runs. Completion,
failure and progress are accepted only from the lease holder; a job whose lease expired (its worker was killed,
its machine lost) is taken back by the next claim of any worker; its attempt counts only when it was plausibly
the cause of the death (the attempts rule, ``_take_back_expired``), and it is failed with the reason after
``max_attempts``. Written once for SQLite and PostgreSQL; what differs is in ``jobs/database.py``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.jobs.convert import to_job, transcript_from_json, transcript_to_json
from wazo_stt.jobs.database import DEFAULT_BUSY_TIMEOUT_MS, Database, DuplicateError
from wazo_stt.jobs.events import JobEvents, JobWatch
from wazo_stt.jobs.fair_order import fair_order, position_of, sort_key
from wazo_stt.jobs.migrate import run_migrations
from wazo_stt.jobs.outbox import Outbox, enqueue_webhook
from wazo_stt.jobs.records import Job, JobSnapshot, NewJob, QueueFullError, Submission
from wazo_stt.jobs.schema import AudioRow, JobRow, SenderTurn, TenantTurn

# A job whose worker died this many times (crash, out of memory, lost machine), or whose result could not be
# stored this many times, is failed with the reason rather than retried forever.
MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 60.0
# A claim tries the first jobs of the fair order in turn, skipping those other claims hold (PostgreSQL).
CLAIM_CANDIDATES = 32

_PENDING = (JobStatus.QUEUED, JobStatus.PROCESSING)


class JobStore:
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

    # --- worker transitions (only from the lease holder) ---------------------------------------------------

    async def claim_next(self, worker_id: str) -> Job | None:
        """Take the next job in the fair order (``jobs/fair_order.py``) under a fresh lease for ``worker_id``.

        Jobs of dead workers (expired leases) are first put back in the queue by the attempts rule
        (:meth:`_take_back_expired`). A *suspect* job runs alone in its worker process: a process running one
        takes no other job, and a busy process does not take one. ``FOR UPDATE SKIP LOCKED`` lets N workers on
        PostgreSQL claim side by side without colliding or coming back empty while jobs wait (SQLite ignores it:
        its write lock serialises claims); claims of one process are serialised (suspects stay alone).
        """
        now = self._clock()
        await self._take_back_expired(now)
        pool = worker_id.rsplit("/", 1)[0]
        async with self._db.writing() as session:
            await self._db.serialise(session, f"pool:{pool}")
            held = (await session.execute(select(JobRow.suspect).where(_in_pool(pool)))).scalars().all()
            if any(held):
                return None  # a suspect job runs in this process: alone
            fair = fair_order()
            order = select(fair.c.seq).order_by(*sort_key(fair)).limit(CLAIM_CANDIDATES)
            if held:
                order = order.where(fair.c.suspect.is_(False))
            # The order first, then a lock on the first candidate no other claim holds: one query joining the
            # sorted queue back to its rows let PostgreSQL pick a nested loop (n x n) on stale statistics.
            row = None
            for seq in (await session.execute(order)).scalars():
                row = await session.scalar(
                    select(JobRow)
                    .where(JobRow.seq == seq, JobRow.status == JobStatus.QUEUED)
                    .with_for_update(skip_locked=True)
                )
                if row is not None:
                    break
            if row is None:
                return None
            claimed = await session.scalar(
                update(JobRow)
                .where(JobRow.seq == row.seq)
                .values(
                    status=JobStatus.PROCESSING,
                    started_at=now,
                    attempts=JobRow.attempts + 1,
                    worker_id=worker_id,
                    lease_expires_at=now + self.lease_seconds,
                    progress=0.0,
                    partial_text=None,
                )
                .returning(JobRow)
            )
            await self._record_turn(session, claimed)
            await self._db.announce(session, row.id)
        self.events.publish(row.id)
        return to_job(claimed)

    async def _record_turn(self, session: AsyncSession, row: JobRow) -> None:
        """Move the claimed job's tenant and sender to the end of their round-robin rotations."""
        served = await session.scalar(select(func.coalesce(func.max(TenantTurn.served), 0) + 1))
        await self._db.upsert(session, TenantTurn, {"tenant": row.tenant, "served": served}, ["tenant"])
        sender = {"tenant": row.tenant, "sender": row.user_uuid or "", "served": served}
        await self._db.upsert(session, SenderTurn, sender, ["tenant", "sender"])

    async def _take_back_expired(self, now: float) -> None:
        """The attempts rule: put back the jobs of worker processes whose leases expired (killed, lost, paused).

        A process's jobs are judged together (one process at a time, under a lock): a job that was the only one
        its process held is the plausible cause of the death, so its attempt stays counted, and it is failed
        once it used ``max_attempts``. Jobs that died together with others cannot be told apart: none is
        counted; each becomes *suspect* and runs alone from then on, so that if it is the culprit, its next
        death is counted against it alone. A graceful stop never counts (``release``).
        """
        while True:
            async with self._db.reading() as session:  # the common case, nothing expired, takes no write lock
                if await session.scalar(select(JobRow.seq).where(_expired(now)).limit(1)) is None:
                    return
            async with self._db.writing() as session:
                expired = (
                    await session.execute(
                        select(JobRow.worker_id).where(_expired(now)).limit(1).with_for_update(skip_locked=True)
                    )
                ).first()
                if expired is None:
                    return
                pool = worker_pool(expired.worker_id)
                if not await self._db.try_exclusive(session, f"take-back:{pool or ''}"):
                    return  # another server is taking this process's jobs back right now
                rows = (
                    await session.scalars(
                        select(JobRow).where(_expired(now), _in_pool(pool)).order_by(JobRow.seq).with_for_update()
                    )
                ).all()
                changed = [await self._take_back(session, row, alone=len(rows) == 1) for row in rows]
            for job_id, queued in changed:
                self.events.publish(job_id, queued=queued)

    async def _take_back(self, session: AsyncSession, row: JobRow, *, alone: bool) -> tuple[str, bool]:
        if alone and row.attempts >= self.max_attempts:
            reason = f"The server stopped while transcribing this job {row.attempts} times; giving up"
            await self._end(session, row.id, status=JobStatus.FAILED, error=reason)
            return row.id, False
        values: dict[str, Any] = {} if alone else {"attempts": _UNCOUNTED, "suspect": True}
        await session.execute(update(JobRow).where(JobRow.seq == row.seq).values(**_UNCLAIMED, **values))
        await self._db.announce(session, row.id, queued=True)
        return row.id, True

    async def renew(
        self, job_id: str, worker_id: str, *, progress: float | None = None, partial_text: str | None = None
    ) -> bool:
        """Extend the lease (and record progress); False when the lease is lost: stop working on the job."""
        values: dict[str, Any] = {"lease_expires_at": self._clock() + self.lease_seconds}
        if progress is not None:
            values["progress"] = progress
        if partial_text is not None:
            values["partial_text"] = partial_text
        return await self._as_holder(job_id, worker_id, announce=progress is not None, **values)

    async def complete(self, job_id: str, worker_id: str, transcript: Transcript) -> bool:
        """Store the result; False (nothing written) when ``worker_id`` no longer holds the job's lease."""
        data = await transcript_to_json(transcript)
        return await self._finish(
            job_id,
            worker_id,
            status=JobStatus.COMPLETED,
            text=transcript.text,
            transcript=data,
            audio_duration=transcript.duration,
        )

    async def fail(self, job_id: str, worker_id: str, error: str) -> bool:
        return await self._finish(job_id, worker_id, status=JobStatus.FAILED, error=error)

    async def release(self, job_id: str, worker_id: str) -> bool:
        """Put a job back in the queue with its attempt *not* counted: for a graceful stop that could not wait
        for the job, which did nothing wrong (it takes its place back: its sender's oldest job again)."""
        return await self._as_holder(job_id, worker_id, queued=True, attempts=_UNCOUNTED, **_UNCLAIMED)

    async def retry_later(self, job_id: str, worker_id: str, reason: str) -> JobStatus | None:
        """Something other than the database went wrong with the job (its result could not be stored, a bug):
        its attempt stays counted, and it goes back to the queue, or fails with ``reason`` once it used
        ``max_attempts``. Returns the job's new status (None when the lease was lost)."""
        async with self._db.writing() as session:
            row = await session.scalar(_held(select(JobRow), job_id, worker_id))
            if row is None:
                return None
            if row.attempts >= self.max_attempts:
                error = f"Failed {row.attempts} times; giving up. Last error: {reason}"
                await self._end(session, job_id, status=JobStatus.FAILED, error=error)
                status = JobStatus.FAILED
            else:
                await session.execute(update(JobRow).where(JobRow.id == job_id).values(**_UNCLAIMED))
                await self._db.announce(session, job_id, queued=True)
                status = JobStatus.QUEUED
        self.events.publish(job_id, queued=status is JobStatus.QUEUED)
        return status

    async def _finish(self, job_id: str, worker_id: str, **values: Any) -> bool:
        async with self._db.writing() as session:
            held = await session.scalar(_held(select(JobRow.seq), job_id, worker_id).with_for_update())
            if held is None:
                return False
            await self._end(session, job_id, **values)
        self.events.publish(job_id)
        return True

    async def _end(self, session: AsyncSession, job_id: str, **values: Any) -> None:
        """Finish a job in the caller's transaction: result or error stored, lease dropped, audio deleted."""
        await session.execute(
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(finished_at=self._clock(), worker_id=None, lease_expires_at=None, partial_text=None, **values)
        )
        await session.execute(delete(AudioRow).where(AudioRow.job_id == job_id))
        await enqueue_webhook(session, job_id, self._clock())
        await self._db.announce(session, job_id)

    async def _as_holder(
        self, job_id: str, holder: str, /, *, announce: bool = True, queued: bool = False, **values: Any
    ) -> bool:
        async with self._db.writing() as session:
            result = await session.execute(_held(update(JobRow), job_id, holder).values(**values))
            if result.rowcount and announce:
                await self._db.announce(session, job_id, queued=queued)
        if result.rowcount and announce:
            self.events.publish(job_id, queued=queued)
        return bool(result.rowcount)

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


# An attempt taken back: the claim counted it, the job did nothing wrong.
_UNCOUNTED = case((JobRow.attempts > 0, JobRow.attempts - 1), else_=0)
_UNCLAIMED: dict[str, Any] = {
    "status": JobStatus.QUEUED,
    "started_at": None,
    "worker_id": None,
    "lease_expires_at": None,
    "progress": None,
    "partial_text": None,
}


def _scoped(query: Any, tenant: str | None) -> Any:
    return query if tenant is None else query.where(JobRow.tenant == tenant)


def _expired(now: float) -> Any:
    return (JobRow.status == JobStatus.PROCESSING) & (JobRow.lease_expires_at < now)


def worker_pool(worker_id: str | None) -> str | None:
    """The worker process of a lease holder: the pool's id before the ``/N`` of its worker tasks (None: a job
    left processing by the first release, which named no holder)."""
    return None if worker_id is None else worker_id.rsplit("/", 1)[0]


def _in_pool(pool: str | None) -> Any:
    """Jobs held (processing) by any worker of the process ``pool``."""
    if pool is None:
        held_by = JobRow.worker_id.is_(None)
    else:
        held_by = or_(JobRow.worker_id == pool, JobRow.worker_id.startswith(f"{pool}/", autoescape=True))
    return (JobRow.status == JobStatus.PROCESSING) & held_by


def _held(query: Any, job_id: str, worker_id: str) -> Any:
    return query.where(JobRow.id == job_id, JobRow.worker_id == worker_id, JobRow.status == JobStatus.PROCESSING)
