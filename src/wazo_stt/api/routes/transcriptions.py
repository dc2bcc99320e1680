"""``/v1/audio/transcriptions``: submit (synchronous for OpenAI clients, asynchronous for telephony clients),
job status, result, events, lookup by ``(user_uuid, message_id)``, deletion and queue status.

Every route sees only the caller's tenant (the API key's; an admin key sees all): a job is created in it, and
another tenant's job is answered as if it did not exist (404), so its existence is not disclosed."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from wazo_stt.api.auth import authenticate
from wazo_stt.api.callbacks import job_callback_url, webhook_status
from wazo_stt.api.errors import ApiError
from wazo_stt.api.forms import IDENTITY_MAX_CHARS, TranscriptionForm, parse_transcription_form, read_form
from wazo_stt.api.openapi import TRANSCRIPTION_REQUEST, TRANSCRIPTION_RESPONSES, errors
from wazo_stt.api.schemas import deletion_body, job_status_body, lookup_body, submission_body
from wazo_stt.api.state import ServerState, server_state
from wazo_stt.api.streaming import JobWatcher, job_events, openai_stream, sse_response
from wazo_stt.audio import AudioError, AudioInfo, inspect_audio
from wazo_stt.audio.budget import DecodeBusy
from wazo_stt.audio.fetch import FetchError, FetchPolicy, fetch_audio, redact_url
from wazo_stt.auth import Principal
from wazo_stt.domain import JobStatus, ResponseFormat
from wazo_stt.engine.registry import UnknownModelError
from wazo_stt.formats import render
from wazo_stt.jobs.store import Job, NewJob, QueueFullError, Submission
from wazo_stt.logs import bind_job

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/audio/transcriptions", tags=["transcriptions"])

QUEUE_FULL_RETRY_AFTER = "30"
SHUTDOWN_RETRY_AFTER = "10"


def _scope(principal: Principal) -> str | None:
    """The tenant whose jobs the caller may see and delete: its own, or every tenant's (None) with an admin key."""
    return None if principal.admin else principal.tenant


@router.post("", openapi_extra=TRANSCRIPTION_REQUEST, responses=TRANSCRIPTION_RESPONSES)
async def create_transcription(
    request: Request, state: ServerState = Depends(server_state), principal: Principal = Depends(authenticate)
) -> Response:
    _check_rate(principal, state)  # before the upload is read
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

    if form.is_async:
        # Known pair: answer from the store without downloading or decoding the audio again; with force, a pair
        # already queued or running is not queued twice, so there is nothing to download either.
        assert form.user_uuid is not None and form.message_id is not None
        existing = await state.store.lookup(form.user_uuid, form.message_id, tenant=principal.tenant)
        if existing is not None and _answers_without_audio(existing, form.force):
            if form.stream:
                return _stream(existing, form, state)
            return await _submission_response(existing, state, created=False, forced=form.force)

    submission = await _submit(form, engine.model_id, state, principal.tenant)
    job = submission.job
    # Nothing of the upload is kept while the answer waits for the job (up to SYNC_TIMEOUT_SECS): the bytes died
    # with _submit's frame, and the form's temporary file is closed now rather than at the end of the request.
    if form.upload is not None:
        await form.upload.close()
    if form.stream:
        return _stream(job, form, state)
    if form.is_async:
        return await _submission_response(
            job, state, created=submission.created, forced=form.force, position=submission.queue_position
        )
    return await _wait_and_render(job, form, state)


def _answers_without_audio(existing: Job, force: bool) -> bool:
    if force:
        return existing.status in (JobStatus.QUEUED, JobStatus.PROCESSING)
    return existing.status is not JobStatus.FAILED  # a failed pair is submitted again (the store decides)


def _stream(job: Job, form: TranscriptionForm, state: ServerState) -> Response:
    watcher = JobWatcher(state, job.id, timeout=state.settings.sync_timeout_secs)
    return sse_response(openai_stream(watcher, logprobs=form.logprobs), job.id)


async def _submit(form: TranscriptionForm, model_id: str, state: ServerState, tenant: str) -> Submission:
    """Read, check and queue the audio. The bytes live only in this frame, so they are freed when it returns."""
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
                model=model_id,
                response_format=form.response_format.value,
                language=form.language,
                granularities=form.granularities,
                user_uuid=form.user_uuid,
                message_id=form.message_id,
                source=source,
                callback_url=callback_url,
                tenant=tenant,  # an admin key's jobs belong to its own tenant too: pairs are per tenant
            ),
            force=form.force,
        )
    except QueueFullError as exc:
        what = (
            f"{state.settings.max_queue_audio_secs:g} seconds of audio waiting, MAX_QUEUE_AUDIO_SECS"
            if exc.audio
            else f"{state.store.max_queue_size} jobs waiting, MAX_QUEUE_SIZE"
        )
        raise ApiError(
            429,
            f"The queue is full ({what}); retry later",
            code="queue_full",
            headers={"Retry-After": QUEUE_FULL_RETRY_AFTER},
        ) from None
    bind_job(submission.job.id)  # before the "queued" line, so that it carries the job id too
    if submission.created:
        state.workers.notify()
        log.info("Job %s queued (%s, %.1f s of audio)", submission.job.id, source, duration)
    return submission


def _check_rate(principal: Principal, state: ServerState) -> None:
    """RATE_LIMIT_PER_MINUTE, per API key (api/rate_limit.py): a 429 with Retry-After past it."""
    wait = state.rate_limiter.take(principal.key_id)
    if wait:
        raise ApiError(
            429,
            f"Rate limit reached: {state.rate_limiter.per_minute:g} transcriptions per minute for this API key "
            "(RATE_LIMIT_PER_MINUTE); retry after the time in Retry-After",
            code="rate_limit_exceeded",
            headers={"Retry-After": state.rate_limiter.retry_after(wait)},
        )


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
        raise ApiError(404, f"Job {job.id} was deleted before its transcript was ready", code="job_deleted")
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
    return await _render(finished, form.response_format, form.granularities, logprobs=form.logprobs)


async def _render(
    job: Job, response_format: ResponseFormat | str, granularities, *, logprobs: bool = False
) -> Response:
    """Render and serialise in a thread: a 4-hour transcript takes a quarter of a second, and every other
    request (status polls, health checks) would wait for it on the event loop."""
    assert job.transcript is not None
    return await run_in_threadpool(_response, job.id, job.transcript, response_format, granularities, logprobs)


def _response(job_id: str, transcript, response_format, granularities, logprobs: bool) -> Response:
    rendered = render(transcript, response_format, granularities, logprobs=logprobs)
    headers = {"X-Job-Id": job_id}
    if isinstance(rendered.body, dict):
        return JSONResponse(rendered.body, headers=headers)
    return PlainTextResponse(rendered.body, media_type=rendered.media_type, headers=headers)


@router.get("/status", responses=errors(503))
async def queue_status(
    state: ServerState = Depends(server_state), principal: Principal = Depends(authenticate)
) -> dict:
    counts = await state.store.counts(tenant=_scope(principal))
    return {
        "queue_length": counts[JobStatus.QUEUED],
        "processing": counts[JobStatus.PROCESSING] > 0,
        "max_queue_size": state.store.max_queue_size,
    }


@router.get("/lookup", responses=errors(400, 503))
async def lookup(
    user_uuid: Annotated[str, Query(min_length=1, max_length=IDENTITY_MAX_CHARS)],
    message_id: Annotated[str, Query(min_length=1, max_length=IDENTITY_MAX_CHARS)],
    state: ServerState = Depends(server_state),
    principal: Principal = Depends(authenticate),
) -> dict:
    return lookup_body(await state.store.lookup(user_uuid, message_id, tenant=_scope(principal)))


@router.delete("", responses=errors(400, 404, 503))
async def delete_by_identity(
    user_uuid: Annotated[str, Query(min_length=1, max_length=IDENTITY_MAX_CHARS)],
    message_id: Annotated[str | None, Query(min_length=1, max_length=IDENTITY_MAX_CHARS)] = None,
    state: ServerState = Depends(server_state),
    principal: Principal = Depends(authenticate),
) -> dict:
    """Erase the job of a ``(user_uuid, message_id)`` pair, or with ``user_uuid`` alone every job of that user
    (GDPR erasure): a list of what was deleted, or 404 when nothing matched."""
    deleted = await state.store.delete_matching(user_uuid, message_id, tenant=_scope(principal))
    if not deleted:
        raise ApiError(404, "No job matches this user_uuid and message_id", param="user_uuid", code="job_not_found")
    for job in deleted:
        log.info("Job %s deleted (was %s)", job.id, job.status.value)
    return {"object": "list", "data": [deletion_body(job) for job in deleted]}


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, f"No job with id '{job_id}'", param="job_id", code="job_not_found")


async def _job_or_404(job_id: str, state: ServerState, principal: Principal, *, with_transcript: bool = False) -> Job:
    job = await state.store.get(job_id, tenant=_scope(principal), with_transcript=with_transcript)
    if job is None:
        raise _not_found(job_id)
    bind_job(job.id)
    return job


async def _status_body(job_id: str, state: ServerState, principal: Principal) -> dict:
    # One snapshot (status, position, progress read in one statement): a poll racing the worker never sees
    # 'queued' without a position or 'processing' without progress.
    snapshot = await state.store.snapshot(job_id, tenant=_scope(principal))
    if snapshot is None:
        raise _not_found(job_id)
    bind_job(snapshot.job.id)
    body = job_status_body(snapshot.job, snapshot.queue_position, snapshot.progress)
    if (webhook := await webhook_status(snapshot.job, state)) is not None:
        body["webhook"] = webhook
    return body


@router.get("/{job_id}", responses=errors(404, 503))
async def job_status(
    job_id: str, state: ServerState = Depends(server_state), principal: Principal = Depends(authenticate)
) -> dict:
    return await _status_body(job_id, state, principal)


@router.delete("/{job_id}", responses=errors(404, 503))
async def delete_job(
    job_id: str, state: ServerState = Depends(server_state), principal: Principal = Depends(authenticate)
) -> dict:
    """Erase a job (row, audio, text); a queued job never runs, a running one is cancelled."""
    job = await state.store.delete(job_id, tenant=_scope(principal))
    if job is None:
        raise _not_found(job_id)
    log.info("Job %s deleted (was %s)", job.id, job.status.value)
    return deletion_body(job)


@router.get(
    "/{job_id}/result",
    responses={
        200: {"description": "The transcript in the format asked (or at submission)", "content": {"text/plain": {}}},
        202: {"description": "Not finished yet: the job's status"},
        **errors(400, 404, 500, 503),
    },
)
async def job_result(
    job_id: str,
    response_format: str | None = None,
    state: ServerState = Depends(server_state),
    principal: Principal = Depends(authenticate),
) -> Response:
    job = await _job_or_404(job_id, state, principal, with_transcript=True)
    fmt = (response_format or job.response_format).lower()
    if fmt not in {f.value for f in ResponseFormat}:
        allowed = ", ".join(f.value for f in ResponseFormat)
        raise ApiError(400, f"Invalid response_format '{fmt}'; use one of: {allowed}", param="response_format")
    if job.status is JobStatus.FAILED:
        raise ApiError(500, job.error or "Transcription failed", code="job_failed")
    if job.status is not JobStatus.COMPLETED:
        return JSONResponse(await _status_body(job.id, state, principal), status_code=202)
    return await _render(job, fmt, job.granularities)


@router.get(
    "/{job_id}/events",
    responses={200: {"description": "Server-sent events", "content": {"text/event-stream": {}}}, **errors(404, 503)},
)
async def job_event_stream(
    job_id: str, state: ServerState = Depends(server_state), principal: Principal = Depends(authenticate)
) -> Response:
    """Server-sent events: ``queued`` (with the position), ``processing`` (progress, text so far), then
    ``completed`` or ``failed``; each carries the job's status body."""
    job = await _job_or_404(job_id, state, principal)
    return sse_response(job_events(JobWatcher(state, job.id, timeout=state.settings.sync_timeout_secs)), job.id)
