"""Server-sent events: OpenAI's ``stream=true`` transcription events, and a job's life for a browser.

Both follow a job that went through the persistent queue like any other; only the answer differs:

- ``stream=true`` on ``POST /v1/audio/transcriptions`` answers OpenAI's ``transcript.text.delta`` events as each
  chunk is recognised, then ``transcript.text.done`` with the full text and ``usage`` (the openai SDKs'
  ``create(..., stream=True)``). While the job waits in the queue its position goes out as an SSE comment, which
  every SSE client ignores; a failure is an ``{"error": ...}`` event, which the SDKs raise as ``APIError``.
- ``GET /v1/audio/transcriptions/{job_id}/events`` answers named events ``queued`` (with the position),
  ``processing`` (progress and the text so far), then ``completed`` or ``failed``, each carrying the job's status
  body, so a page follows a job with an ``EventSource`` instead of polling.

Where a job's state is read from is ``JobWatcher.view``, and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from wazo_stt.api.errors import error_body
from wazo_stt.api.schemas import job_status_body
from wazo_stt.api.state import ServerState
from wazo_stt.domain import JobStatus
from wazo_stt.formats.render import usage, word_logprobs
from wazo_stt.jobs.store import Job

# How often a watcher looks again without being told of a change (one small query); the worker writes progress
# and the text so far about once a second (jobs/worker.py, PROGRESS_WRITE_SECONDS).
POLL_SECONDS = 0.25
# A comment this often keeps proxies and browsers from closing a stream that has nothing new to say.
KEEPALIVE_SECONDS = 15.0
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED)


@dataclass(frozen=True, slots=True)
class JobView:
    """One consistent look at a job: its status, and what goes with that status."""

    job: Job
    progress: float | None = None
    text: str = ""  # recognised so far while processing; the whole transcript once completed
    queue_position: int | None = None

    @property
    def status(self) -> JobStatus:
        return self.job.status

    def status_body(self) -> dict[str, Any]:
        body = job_status_body(self.job, self.queue_position, self.progress)
        if self.status is JobStatus.PROCESSING:
            body["text"] = self.text
        return body


class JobWatcher:
    """Follows one job until it is finished, the server stops, or the time is up.

    The only place the streams read a job's state: the store's snapshot (status, queue position, progress and
    the text recognised so far, which the worker running the job writes, in whichever process), and the store's
    change notifications to know when to look again.
    """

    def __init__(self, state: ServerState, job_id: str, *, timeout: float) -> None:
        self.state = state
        self.job_id = job_id
        self.timeout = timeout

    async def view(self) -> JobView | None:
        snapshot = await self.state.store.snapshot(self.job_id)
        if snapshot is None:
            return None
        job = snapshot.job
        if job.status is JobStatus.PROCESSING:
            return JobView(job, progress=job.progress, text=job.partial_text or "")
        if job.status is JobStatus.QUEUED:
            return JobView(job, queue_position=snapshot.queue_position)
        return JobView(job, text=job.text or "")

    async def with_transcript(self) -> Job | None:
        """The finished job with its whole transcript (loaded only for the last event)."""
        return await self.state.store.get(self.job_id, with_transcript=True)

    async def views(self) -> AsyncIterator[JobView | None]:
        """Each new view (and the same one again every KEEPALIVE_SECONDS); ends after a finished one, or when the
        job is gone. A job still waiting when the server stops or the time is up ends the iteration too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        last: tuple | None = None
        last_sent = loop.time()
        with self.state.store.watch(self.job_id) as changed:  # registered before the first read: no change missed
            while True:
                view = await self.view()
                if view is None:
                    yield None
                    return
                key = (view.status, view.queue_position, view.progress, view.text)
                if key != last or loop.time() - last_sent >= KEEPALIVE_SECONDS:
                    last, last_sent = key, loop.time()
                    yield view
                if view.status in FINISHED:
                    return
                if loop.time() >= deadline or (self.state.workers.stopping and view.status is JobStatus.QUEUED):
                    return
                # Progress is written without a notification: look again at least this often.
                await changed.wait(min(POLL_SECONDS, max(deadline - loop.time(), 0.0)))


def sse_response(events: AsyncIterator[str], job_id: str) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Job-Id": job_id}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def _data(payload: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def openai_stream(watcher: JobWatcher, *, logprobs: bool) -> AsyncIterator[str]:
    """OpenAI's transcription events: text deltas as chunks are recognised, then the full text."""
    sent = ""
    last: JobView | None = None
    async for view in watcher.views():
        if view is None:
            yield _data(error_body(404, "The job was deleted before its transcript was ready", code="job_deleted"))
            return
        last = view
        if view.status is JobStatus.QUEUED:
            where = f", position {view.queue_position}" if view.queue_position is not None else ""
            yield f": queued{where}\n\n"
        elif view.status is JobStatus.PROCESSING and view.text == sent:
            yield f": processing, {round((view.progress or 0.0) * 100)}%\n\n"
        growing = len(view.text) > len(sent) and view.text.startswith(sent)
        if view.status in (JobStatus.PROCESSING, JobStatus.COMPLETED) and growing:
            yield _data({"type": "transcript.text.delta", "delta": view.text[len(sent) :]})
            sent = view.text
        if view.status is JobStatus.COMPLETED:
            job = await watcher.with_transcript()
            if job is not None and job.transcript is not None:
                yield await run_in_threadpool(_done_event, job, logprobs)
            else:
                yield _data(error_body(500, "The job's transcript is gone", code="job_lost"))
            return
        if view.status is JobStatus.FAILED:
            yield _data(error_body(500, view.job.error or "Transcription failed", code="job_failed"))
            return
    yield _data(_unfinished_error(watcher, last))


def _done_event(job: Job, logprobs: bool) -> str:
    """The last event; built off the event loop, as a long transcript's logprobs are many."""
    assert job.transcript is not None
    payload: dict[str, Any] = {
        "type": "transcript.text.done",
        "text": job.transcript.text,
        "usage": usage(job.transcript.duration),
    }
    if logprobs:
        payload["logprobs"] = word_logprobs(job.transcript)
    return _data(payload)


def _unfinished_error(watcher: JobWatcher, last: JobView | None) -> dict[str, Any]:
    job_id = watcher.job_id
    later = f"fetch it later from /v1/audio/transcriptions/{job_id}/result"
    if watcher.state.workers.stopping and last is not None and last.status is JobStatus.QUEUED:
        message = f"The server is shutting down; job {job_id} stays queued and will be transcribed after the restart: "
        return error_body(503, message + later, code="shutting_down")
    return error_body(504, f"The transcription is still running after {watcher.timeout:g} s; {later}", code="timeout")


async def job_events(watcher: JobWatcher) -> AsyncIterator[str]:
    """A job's life as named events: ``queued``, ``processing``, then ``completed`` or ``failed``."""
    async for view in watcher.views():
        if view is None:
            yield _data(error_body(404, f"No job with id '{watcher.job_id}'", code="job_not_found"), "error")
            return
        yield _data(view.status_body(), view.status.value)
