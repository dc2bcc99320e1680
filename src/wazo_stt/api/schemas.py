"""JSON bodies of the job endpoints (API.md), built from store records."""

from __future__ import annotations

from typing import Any

from wazo_stt.domain import JobStatus
from wazo_stt.jobs.store import Job


def job_status_body(job: Job, queue_position: int | None, progress: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status.value,
        "queue_position": queue_position,
        "user_uuid": job.user_uuid,
        "message_id": job.message_id,
        "created_at": int(job.created_at),
    }
    if job.status is JobStatus.PROCESSING and progress is not None:
        body["progress"] = round(progress, 3)
    if job.status is JobStatus.COMPLETED:
        body["text"] = job.text
        body["duration"] = job.audio_duration
    if job.status is JobStatus.FAILED:
        body["error"] = job.error
    return body


def lookup_body(job: Job | None) -> dict[str, Any]:
    if job is None:
        return {"found": False}
    body: dict[str, Any] = {"found": True, "job_id": job.id, "status": job.status.value}
    if job.status is JobStatus.COMPLETED:
        body["text"] = job.text
        body["duration"] = job.audio_duration
    if job.status is JobStatus.FAILED:
        body["error"] = job.error
    body["created_at"] = int(job.created_at)
    return body


def submission_body(job: Job, queue_position: int | None, *, created: bool, forced: bool) -> dict[str, Any]:
    if created:
        message = f"Job queued. Position in queue: {queue_position}"
    elif job.status is JobStatus.COMPLETED:
        message = "Transcription already exists"
    elif job.status is JobStatus.FAILED:
        message = "Transcription already attempted and failed; submit with force=true to retry"
    elif forced:
        message = f"Job already {job.status.value}; it is not queued twice"
    else:
        message = f"Job already {job.status.value}" + (
            f". Position in queue: {queue_position}" if queue_position else ""
        )
    return {
        "job_id": job.id,
        "status": job.status.value,
        "queue_position": queue_position,
        "message": message,
        "cached": not created and not forced,
    }


def deletion_body(job: Job) -> dict[str, Any]:
    """OpenAI's answer to a deletion (``{"id", "object", "deleted": true}``), with what the job was: ``status``
    tells whether it was still queued or processing (then cancelled)."""
    return {
        "id": job.id,
        "object": "transcription.job",
        "deleted": True,
        "status": job.status.value,
        "user_uuid": job.user_uuid,
        "message_id": job.message_id,
    }
