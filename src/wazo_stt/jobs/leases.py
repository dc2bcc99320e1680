"""Leases: how a worker holds a job, and how the jobs of dead workers come back (the attempts rule).

A claimed job carries a **lease**: its worker's id and an expiry the worker renews while it runs. Completion,
failure and progress are accepted only from the lease holder; a job whose lease expired (its worker was killed,
its machine lost) is taken back by the next claim of any worker; its attempt counts only when it was plausibly
the cause of the death (the attempts rule, ``_take_back_expired``), and it is failed with the reason after
``max_attempts``. Kept apart from ``jobs/store.py`` (submission, reads, erasure, retention) because these
transitions are the only writes a worker makes, and the only ones whose correctness rests on who holds the lease.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.jobs.convert import to_job, transcript_to_json
from wazo_stt.jobs.database import Database
from wazo_stt.jobs.events import JobEvents
from wazo_stt.jobs.fair_order import fair_order, sort_key
from wazo_stt.jobs.outbox import enqueue_webhook
from wazo_stt.jobs.records import Job
from wazo_stt.jobs.schema import AudioRow, JobRow, SenderTurn, TenantTurn

# A job whose worker died this many times (crash, out of memory, lost machine), or whose result could not be
# stored this many times, is failed with the reason rather than retried forever.
MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 60.0
# A claim tries the first jobs of the fair order in turn, skipping those other claims hold (PostgreSQL).
CLAIM_CANDIDATES = 32


class LeaseTransitions:
    """The worker's side of :class:`~wazo_stt.jobs.store.JobStore` (a mixin it inherits): claim under a lease,
    renew it, and finish, fail, release or retry the job, each only while the lease is still the caller's.

    A mixin rather than a separate object so that workers keep calling ``store.claim_next`` and friends on the
    one store; it uses the store's database, clock, events and lease settings, declared here.
    """

    _db: Database
    _clock: Callable[[], float]
    events: JobEvents
    lease_seconds: float
    max_attempts: int

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
                held = (
                    await session.scalars(select(JobRow).where(_in_pool(pool)).order_by(JobRow.seq).with_for_update())
                ).all()
                rows = [row for row in held if row.lease_expires_at is not None and row.lease_expires_at < now]
                if len(rows) < len(held) and min(row.lease_expires_at for row in rows) > now - self.lease_seconds:
                    # Its other leases are still running: each worker renews its own, up to a second apart. If the
                    # process died they expire within one lease; judged before, a job that died with others
                    # would count as the only one (issue 14: an innocent voicemail failed after unrelated kills).
                    return
                changed = [await self._take_back(session, row, alone=len(held) == 1) for row in rows]
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
