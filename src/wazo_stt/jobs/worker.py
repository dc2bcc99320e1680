"""Workers: take the oldest queued job from the store, transcribe it off the event loop, store the result.

Decoding and inference are CPU-bound and blocking, so they run in a thread pool; the event loop stays free and a
status poll answers in milliseconds while an hour of audio is being transcribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from wazo_stt.audio import AudioError, decode_audio
from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.engine.registry import EngineRegistry, UnknownModelError
from wazo_stt.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


class WorkerPool:
    def __init__(
        self,
        store: JobStore,
        registry: Callable[[], EngineRegistry | None],
        *,
        workers: int = 1,
        poll_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._registry = registry
        self._workers = workers
        self._poll_seconds = poll_seconds
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wazo-stt-worker")
        self._wakeup = asyncio.Event()
        self._finished: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.busy = 0  # jobs being transcribed right now

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"worker-{i}") for i in range(self._workers)]

    def notify(self) -> None:
        """A job was queued (or the engine became ready): wake an idle worker now rather than at its next poll."""
        self._wakeup.set()

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop taking jobs; let running ones finish within the grace period, else leave them to be re-queued."""
        self._stopping = True
        self._wakeup.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def wait_finished(self, job_id: str, timeout: float) -> Job | None:
        """Wait until the job is completed or failed; returns it then, or the job as it is at the timeout."""
        event = self._finished.setdefault(job_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                job = await self._store.get(job_id, with_transcript=True)
                if job is None or job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                    return job
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return job
                # The event is the fast path; the timeout covers a job finished by another process.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, self._poll_seconds * 5))
        finally:
            self._finished.pop(job_id, None)

    async def _run(self) -> None:
        while not self._stopping:
            # Clear before looking, so a job queued while we look still wakes us.
            self._wakeup.clear()
            registry = self._registry()
            job = await self._store.claim_next() if registry is not None else None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._poll_seconds)
                continue
            assert registry is not None
            self.busy += 1
            try:
                await self._process(job, registry)
            finally:
                self.busy -= 1
                if event := self._finished.get(job.id):
                    event.set()

    async def _process(self, job: Job, registry: EngineRegistry) -> None:
        audio = await self._store.audio(job.id)
        if audio is None:
            await self._store.fail(job.id, "The job's audio is missing from the database")
            return
        loop = asyncio.get_running_loop()
        try:
            transcript = await loop.run_in_executor(self._executor, _transcribe, audio, job, registry)
        except (AudioError, UnknownModelError) as exc:
            log.warning("Job %s failed: %s", job.id, exc)
            await self._store.fail(job.id, str(exc))
        except Exception as exc:
            log.exception("Job %s failed", job.id)
            await self._store.fail(job.id, f"Transcription failed: {type(exc).__name__}: {exc}")
        else:
            await self._store.complete(job.id, transcript)
            log.info("Job %s completed (%.1f s of audio)", job.id, transcript.duration)


def _transcribe(audio: bytes, job: Job, registry: EngineRegistry) -> Transcript:
    engine = registry.resolve(job.model)
    decoded = decode_audio(audio)
    return engine.transcribe(decoded.samples, job.language)
