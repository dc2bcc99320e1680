"""The tables, as the ORM sees them. The migrations (``jobs/migrations``) create and evolve them in the database;
this module must describe the schema the latest migration leaves."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"
    # A pair identifies a voicemail within one tenant (API keys map to tenants; '' is the single local tenant).
    __table_args__ = (
        UniqueConstraint("tenant", "user_uuid", "message_id", name="uq_jobs_identity"),
        Index("ix_jobs_status_seq", "status", "seq"),
    )

    # ``seq`` orders the queue; ``id`` is what clients see.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    tenant: Mapped[str] = mapped_column(String(64), default="", server_default="")
    status: Mapped[str] = mapped_column(String(16))
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
    # The lease: which worker runs the job, until when (store clock, epoch seconds) unless it renews.
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    progress: Mapped[float | None] = mapped_column(Float)
    partial_text: Mapped[str | None] = mapped_column(Text)
    # Was running when its worker process died holding other jobs too: it runs alone from then on, so that a
    # crash it causes is told apart from one its neighbours caused (see JobStore's attempts rule).
    suspect: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    callback_url: Mapped[str | None] = mapped_column(Text)  # where the webhook goes when the job ends (full URL)


class AudioRow(Base):
    __tablename__ = "job_audio"

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class TenantTurn(Base):
    """When each tenant was last served (a claim counter, not a time): the fair queue's round-robin memory."""

    __tablename__ = "tenant_turns"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    served: Mapped[int] = mapped_column(Integer)


class SenderTurn(Base):
    """When each sender (``user_uuid``; '' for jobs without one) of a tenant was last served."""

    __tablename__ = "sender_turns"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    sender: Mapped[str] = mapped_column(Text, primary_key=True)
    served: Mapped[int] = mapped_column(Integer)


class OutboxRow(Base):
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
