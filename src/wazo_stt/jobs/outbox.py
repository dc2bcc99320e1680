"""The webhook outbox: events written by the transaction that finishes a job, delivered later by any process.

A process claims due events for a short lease (``locked_until``), so two processes never send one event at the
same time, and an event whose process died mid-delivery is taken again once the lease is over (at-least-once:
the receiver de-duplicates on the event id). ``FOR UPDATE SKIP LOCKED`` lets claims on PostgreSQL pass each
other; SQLite's write lock serialises them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wazo_stt.jobs.database import Database
from wazo_stt.jobs.schema import JobRow, OutboxRow

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event to deliver: ``id`` is the ``webhook-id`` header, the same on every attempt."""

    id: str
    job_id: str
    url: str
    event_type: str
    attempts: int  # attempts made before this one
    created_at: float


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where a job's webhook stands, for the job status."""

    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    delivered_at: float | None


async def enqueue_webhook(session: AsyncSession, job_id: str, now: float) -> None:
    """In the transaction that ends a job: write its webhook event, when it has a callback URL."""
    row = (await session.execute(select(JobRow.callback_url, JobRow.status).where(JobRow.id == job_id))).first()
    if row is None or row.callback_url is None:
        return
    session.add(
        OutboxRow(
            id=f"msg_{uuid.uuid4().hex}",
            job_id=job_id,
            url=row.callback_url,
            event_type=f"transcription.{row.status}",
            status=PENDING,
            created_at=now,
            next_attempt_at=now,
            attempts=0,
        )
    )


class Outbox:
    """The outbox's queue operations (the events themselves are written by :func:`enqueue_webhook`)."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    async def claim_due(self, limit: int, lease_seconds: float) -> list[WebhookEvent]:
        """Take up to ``limit`` events due now that no process holds, for ``lease_seconds``."""
        now = self.now()
        async with self._db.writing() as session:
            rows = (
                await session.scalars(
                    select(OutboxRow)
                    .where(
                        OutboxRow.status == PENDING,
                        OutboxRow.next_attempt_at <= now,
                        or_(OutboxRow.locked_until.is_(None), OutboxRow.locked_until < now),
                    )
                    .order_by(OutboxRow.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_([r.id for r in rows]))
                    .values(locked_until=now + lease_seconds)
                )
            return [WebhookEvent(r.id, r.job_id, r.url, r.event_type, r.attempts, r.created_at) for r in rows]

    async def delivered(self, event_id: str) -> None:
        await self._settle(event_id, status=DELIVERED, delivered_at=self.now(), last_error=None)

    async def retry_at(self, event_id: str, when: float, error: str) -> None:
        await self._settle(event_id, next_attempt_at=when, last_error=error)

    async def give_up(self, event_id: str, error: str) -> None:
        await self._settle(event_id, status=FAILED, last_error=error)

    async def _settle(self, event_id: str, **values: object) -> None:
        # Only a pending event changes: a late answer from a process whose lease ran out cannot undo a delivery.
        async with self._db.writing() as session:
            await session.execute(
                update(OutboxRow)
                .where(OutboxRow.id == event_id, OutboxRow.status == PENDING)
                .values(attempts=OutboxRow.attempts + 1, locked_until=None, **values)
            )

    async def pending_count(self) -> int:
        async with self._db.reading() as session:
            return await session.scalar(select(func.count()).where(OutboxRow.status == PENDING)) or 0

    async def state_for_job(self, job_id: str) -> DeliveryState | None:
        async with self._db.reading() as session:
            row = await session.scalar(
                select(OutboxRow).where(OutboxRow.job_id == job_id).order_by(OutboxRow.created_at.desc()).limit(1)
            )
        if row is None:
            return None
        pending = row.status == PENDING
        return DeliveryState(
            row.status, row.attempts, row.last_error, row.next_attempt_at if pending else None, row.delivered_at
        )
