"""Rows to records, and transcripts to and from JSON off the event loop (a 4-hour transcript is megabytes)."""

from __future__ import annotations

import asyncio
import json

from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.jobs.records import Job
from wazo_stt.jobs.schema import JobRow


def to_job(row: JobRow, transcript: Transcript | None = None) -> Job:
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
        tenant=row.tenant,
        progress=row.progress,
        partial_text=row.partial_text,
        worker_id=row.worker_id,
        callback_url=row.callback_url,
    )


async def transcript_to_json(transcript: Transcript) -> str:
    return await asyncio.to_thread(lambda: json.dumps(transcript.to_dict(), ensure_ascii=False))


async def transcript_from_json(data: str | None) -> Transcript | None:
    if not data:
        return None
    return await asyncio.to_thread(lambda: Transcript.from_dict(json.loads(data)))
