"""What the job store hands out and takes in: plain records and the store's own exceptions.

No SQLAlchemy type leaves the store: the API and the workers see these, so the database (and its dialect) can
change behind them.
"""

from __future__ import annotations

from dataclasses import dataclass

from wazo_stt.domain import JobStatus, Transcript

# The tenant of a single-tenant install (no API keys): every job belongs to it.
LOCAL_TENANT = ""


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the rest of the program sees it (no ORM object escapes the store)."""

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
    tenant: str = LOCAL_TENANT
    # While processing: the fraction of speech recognised, and the text recognised so far (for streaming).
    progress: float | None = None
    partial_text: str | None = None
    # The worker holding the job's lease while it is processing.
    worker_id: str | None = None
    # Where the job's webhook goes when it ends (the full URL: redact it before showing it).
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
    tenant: str = LOCAL_TENANT
    callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    job: Job
    created: bool  # False: the (user_uuid, message_id) pair already had a job, which is returned instead
    # A new job's place in the queue when it was accepted (counted in the inserting transaction): a worker may
    # take it before the response is written, and the client must still be told where it was queued.
    queue_position: int | None = None


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """A job with its queue position, read in one statement: status, position and progress agree."""

    job: Job
    queue_position: int | None

    @property
    def progress(self) -> float | None:
        return self.job.progress


class StoreError(Exception):
    """Base of the store's exceptions."""


class QueueFullError(StoreError):
    """The queue holds ``MAX_QUEUE_SIZE`` jobs, or ``MAX_QUEUE_AUDIO_SECS`` of audio (``audio``: which one)."""

    def __init__(self, *, audio: bool = False) -> None:
        super().__init__("queued audio" if audio else "queued jobs")
        self.audio = audio


class StoreUnavailableError(StoreError):
    """The database refused or could not be reached (locked past the busy timeout, disk full, server down).

    Nothing was written: the caller may retry (the API answers 503, a worker retries with a pause)."""
