"""``/v1/audio/transcriptions``: submit (synchronous for OpenAI clients, asynchronous for telephony clients),
job status, result, lookup by ``(user_uuid, message_id)`` and queue status."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from wazo_stt.api.callbacks import job_callback_url, webhook_status
from wazo_stt.api.errors import ApiError
from wazo_stt.api.forms import TranscriptionForm, parse_transcription_form, read_form
from wazo_stt.api.schemas import job_status_body, lookup_body, submission_body
from wazo_stt.api.state import ServerState, server_state
from wazo_stt.audio import AudioError, AudioInfo, inspect_audio
from wazo_stt.audio.budget import DecodeBusy
from wazo_stt.audio.fetch import FetchError, FetchPolicy, fetch_audio, redact_url
from wazo_stt.domain import JobStatus, ResponseFormat
from wazo_stt.engine.registry import UnknownModelError
from wazo_stt.formats import render
from wazo_stt.jobs.store import Job, NewJob, QueueFullError
from wazo_stt.logs import bind_job

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/audio/transcriptions", tags=["transcriptions"])

QUEUE_FULL_RETRY_AFTER = "30"
SHUTDOWN_RETRY_AFTER = "10"


@router.post("")
async def create_transcription(request: Request, state: ServerState = Depends(server_state)) -> Response:
    form = parse_transcription_form(await read_form(request))
    registry = state.ready_registry()
    try:
        engine = registry.resolve(form.model)
    except UnknownModelError as exc:
        raise ApiError(400, str(exc), param="model", code="model_not_found") from None
    if form.language is not None and form.language not in engine.languages:
        raise ApiError(
            400,
            f"Language '{form.language}' is not supported by {engine.model_id}; "
            f"supported: {', '.join(sorted(engine.languages))}",
            param="language",
            code="unsupported_language",
        )

    if form.is_async and not form.force:
        # Known pair: answer from the store without downloading or decoding the audio again.
        assert form.user_uuid is not None and form.message_id is not None
        existing = await state.store.lookup(form.user_uuid, form.message_id)
        if existing is not None and existing.status is not JobStatus.FAILED:  # a failed pair is retried
            return await _submission_response(existing, state, created=False, forced=False)

    callback_url = await job_callback_url(form.callback_url, state)
    audio, source = await _read_audio(form, state)
    # Only the duration is kept: the samples (64 KB per second of audio) must not stay alive while a synchronous
    # request waits for its job; the worker decodes again.
    duration = (await _validate_audio(audio, state)).duration
    if state.workers.stopping:
        raise ApiError(
            503,
            "The server is shutting down; nothing was queued, retry in a few seconds",
            code="shutting_down",
            headers={"Retry-After": SHUTDOWN_RETRY_AFTER},
        )
    try:
        submission = await state.store.submit(
            NewJob(
                audio=audio,
                audio_duration=round(duration, 3),
                model=engine.model_id,
                response_format=form.response_format.value,
                language=form.language,
                granularities=form.granularities,
                user_uuid=form.user_uuid,
                message_id=form.message_id,
                source=source,
                callback_url=callback_url,
            ),
            force=form.force,
        )
    except QueueFullError:
        raise ApiError(
            429,
            f"The queue is full ({state.store.max_queue_size} jobs waiting); retry later",
            code="queue_full",
            headers={"Retry-After": QUEUE_FULL_RETRY_AFTER},
        ) from None
    job = submission.job
    bind_job(job.id)
    if submission.created:
        state.workers.notify()
        log.info("Job %s queued (%s, %.1f s of audio)", job.id, source, duration)

    if form.is_async:
        return await _submission_response(
            job, state, created=submission.created, forced=form.force, position=submission.queue_position
        )
    return await _wait_and_render(job, form, state)


async def _submission_response(
    job: Job, state: ServerState, *, created: bool, forced: bool, position: int | None = None
) -> JSONResponse:
    if position is None:
        position = await state.store.queue_position(job.id)
    body = submission_body(job, position, created=created, forced=forced)
    return JSONResponse(body, headers={"X-Job-Id": job.id})


async def _read_audio(form: TranscriptionForm, state: ServerState) -> tuple[bytes, str | None]:
    settings = state.settings
    if form.upload is not None:
        data = await form.upload.read()
        if len(data) > settings.max_upload_bytes:
            raise ApiError(
                413,
                f"The file is larger than the {settings.max_upload_mb:g} MB limit (MAX_UPLOAD_MB)",
                param="file",
                code="too_large",
            )
        return data, form.upload.filename
    assert form.url is not None
    try:
        with state.metrics.fetch_time.time():
            data = await fetch_audio(form.url, FetchPolicy.from_settings(settings))
    except FetchError as exc:
        state.metrics.fetch_failures.labels(exc.reason).inc()
        raise ApiError(exc.status_code, exc.message, param="url", code="url_fetch_failed") from None
    return data, redact_url(form.url)


async def _validate_audio(audio: bytes, state: ServerState) -> AudioInfo:
    """Decode once at submission so bad audio is a 400 now, not a failed job later.

    Streaming (nothing kept but the length) and within the decode budget: see audio/budget.py.
    """
    try:
        async with state.decode_budget.slot():
            return await run_in_threadpool(inspect_audio, audio, max_duration=state.settings.max_audio_duration_secs)
    except AudioError as exc:
        raise ApiError(400, exc.message, param="file", code=f"audio_{exc.reason}") from None
    except DecodeBusy as exc:
        raise ApiError(
            503,
            "The server is busy checking other uploads; nothing was queued, retry in a few seconds",
            code="server_busy",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None


async def _wait_and_render(job: Job, form: TranscriptionForm, state: ServerState) -> Response:
    timeout = state.settings.sync_timeout_secs
    finished = await state.workers.wait_finished(job.id, timeout)
    if finished is None:
        raise ApiError(500, "The job disappeared while it was being processed", code="job_lost")
    if finished.status is JobStatus.FAILED:
        raise ApiError(500, finished.error or "Transcription failed", code="job_failed", headers={"X-Job-Id": job.id})
    if finished.status is not JobStatus.COMPLETED and state.workers.stopping:
        # Kept, not lost: the job runs after the restart and its result stays retrievable by id.
        raise ApiError(
            503,
            f"The server is shutting down; job {job.id} stays queued and will be transcribed after the restart: "
            f"fetch it later from /v1/audio/transcriptions/{job.id}/result",
            code="shutting_down",
            headers={"X-Job-Id": job.id, "Retry-After": SHUTDOWN_RETRY_AFTER},
        )
    if finished.status is not JobStatus.COMPLETED:
        raise ApiError(
            504,
            f"The transcription is still running after {timeout:g} s; "
            f"fetch it later from /v1/audio/transcriptions/{job.id}/result",
            code="timeout",
            headers={"X-Job-Id": job.id},
        )
    return _render(finished, form.response_format, form.granularities)


def _render(job: Job, response_format: ResponseFormat | str, granularities) -> Response:
    assert job.transcript is not None
    rendered = render(job.transcript, response_format, granularities)
    headers = {"X-Job-Id": job.id}
    if isinstance(rendered.body, dict):
        return JSONResponse(rendered.body, headers=headers)
    return PlainTextResponse(rendered.body, media_type=rendered.media_type, headers=headers)


@router.get("/status")
async def queue_status(state: ServerState = Depends(server_state)) -> dict:
    counts = await state.store.counts()
    return {
        "queue_length": counts[JobStatus.QUEUED],
        "processing": counts[JobStatus.PROCESSING] > 0,
        "max_queue_size": state.store.max_queue_size,
    }


@router.get("/lookup")
async def lookup(
    user_uuid: str | None = None, message_id: str | None = None, state: ServerState = Depends(server_state)
) -> dict:
    for name, value in (("user_uuid", user_uuid), ("message_id", message_id)):
        if not value:
            raise ApiError(400, f"{name} is required", param=name)
    assert user_uuid is not None and message_id is not None
    return lookup_body(await state.store.lookup(user_uuid, message_id))


async def _job_or_404(job_id: str, state: ServerState, *, with_transcript: bool = False) -> Job:
    job = await state.store.get(job_id, with_transcript=with_transcript)
    if job is None:
        raise ApiError(404, f"No job with id '{job_id}'", param="job_id", code="job_not_found")
    bind_job(job.id)
    return job


async def _status_body(job_id: str, state: ServerState) -> dict:
    # One snapshot (status, position, progress read in one statement): a poll racing the worker never sees
    # 'queued' without a position or 'processing' without progress.
    snapshot = await state.store.snapshot(job_id)
    if snapshot is None:
        raise ApiError(404, f"No job with id '{job_id}'", param="job_id", code="job_not_found")
    bind_job(snapshot.job.id)
    body = job_status_body(snapshot.job, snapshot.queue_position, snapshot.progress)
    if (webhook := await webhook_status(snapshot.job, state)) is not None:
        body["webhook"] = webhook
    return body


@router.get("/{job_id}")
async def job_status(job_id: str, state: ServerState = Depends(server_state)) -> dict:
    return await _status_body(job_id, state)


@router.get("/{job_id}/result")
async def job_result(
    job_id: str, response_format: str | None = None, state: ServerState = Depends(server_state)
) -> Response:
    job = await _job_or_404(job_id, state, with_transcript=True)
    fmt = (response_format or job.response_format).lower()
    if fmt not in {f.value for f in ResponseFormat}:
        allowed = ", ".join(f.value for f in ResponseFormat)
        raise ApiError(400, f"Invalid response_format '{fmt}'; use one of: {allowed}", param="response_format")
    if job.status is JobStatus.FAILED:
        raise ApiError(500, job.error or "Transcription failed", code="job_failed")
    if job.status is not JobStatus.COMPLETED:
        return JSONResponse(await _status_body(job.id, state), status_code=202)
    return _render(job, fmt, job.granularities)
