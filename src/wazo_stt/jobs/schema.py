"""The tables, as the ORM sees them. The migrations (``jobs/migrations``) create and evolve them in the database;
this module must describe the schema the latest migration leaves."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
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


class AudioRow(Base):
    __tablename__ = "job_audio"

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
