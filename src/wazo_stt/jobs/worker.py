"""Workers: take the oldest queued job from the store, transcribe it off the event loop, store the result.

Decoding and inference are CPU-bound and blocking, so they run in a thread; the event loop stays free and a
status poll answers in milliseconds while an hour of audio is being transcribed.

A worker never dies and never drops a job: a database that refuses a write (locked past its busy timeout, disk
full) is retried with a growing pause, with the transcript kept in memory, so nothing is transcribed twice. On a
graceful stop the running job may finish within the grace period; past it, the job goes back to the queue with
its attempt not counted, and the thread doing the work is abandoned (a daemon: it cannot hold the exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from wazo_stt.audio import AudioError, decode_audio
from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.engine.registry import EngineRegistry, UnknownModelError
from wazo_stt.jobs.store import Job, JobStore

log = logging.getLogger(__name__)

T = TypeVar("T")

# Pauses between retries of a database operation that failed: from the first to the cap, doubling.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# Once the grace period is over, how long the workers get to put their jobs back in the queue.
ABANDON_SECONDS = 10.0


class _Abandoned(Exception):
    """The grace period ended while this worker still held its job."""


class WorkerPool:
    def __init__(
        self,
        store: JobStore,
        registry: Callable[[], EngineRegistry | None],
        *,
        workers: int = 1,
        poll_seconds: float = 1.0,
        retry_seconds: float = RETRY_FIRST_SECONDS,
    ) -> None:
        self._store = store
        self._registry = registry
        self._workers = workers
        self._poll_seconds = poll_seconds
        self._retry_seconds = retry_seconds
        self._wakeup = asyncio.Event()
        self._abandon = asyncio.Event()
        self._finished: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None
        self.busy = 0  # jobs being transcribed right now
        # Job id -> (fraction of its speech recognised, text recognised so far), while it runs here. In memory:
        # it is worth nothing once the job is finished, and writing it to the database would be a write per chunk.
        self._progress: dict[str, tuple[float, str]] = {}

    @property
    def stopping(self) -> bool:
        """True once a stop began: no job is taken any more, and waiting for a queued job is pointless."""
        return self._stopping

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"worker-{i}") for i in range(self._workers)]

    def notify(self) -> None:
        """A job was queued (or the engine became ready): wake an idle worker now rather than at its next poll."""
        self._wakeup.set()

    def begin_stop(self, grace_seconds: float) -> asyncio.Task[None]:
        """Start stopping (once; later calls return the same task), for the signal handler that cannot await."""
        if self._stop_task is None:
            self._stopping = True
            self._wakeup.set()
            self._wake_waiters()  # synchronous requests waiting for a queued job answer now
            self._stop_task = asyncio.create_task(self._stop(grace_seconds), name="stop-workers")
        return self._stop_task

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop taking jobs; let running ones finish within the grace period, else put them back in the queue."""
        await self.begin_stop(grace_seconds)

    async def _stop(self, grace_seconds: float) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace_seconds)
        if pending:
            log.warning("Grace period (%g s) over: the running job goes back to the queue", grace_seconds)
            self._abandon.set()
            _, pending = await asyncio.wait(pending, timeout=ABANDON_SECONDS)
            for task in pending:  # stuck on the database: its job stays processing, re-queued at the next start
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._wake_waiters()

    def progress(self, job_id: str) -> float | None:
        """How much of a running job's speech is recognised (0 to 1), or None when it is not running here."""
        partial = self._progress.get(job_id)
        return partial[0] if partial is not None else None

    def partial(self, job_id: str) -> tuple[float, str] | None:
        """A running job's progress and the text recognised so far, or None when it is not running here."""
        return self._progress.get(job_id)

    def _set_progress(self, job_id: str, done: float, text: str) -> None:
        # Called from the transcription thread; one dict item assignment is atomic under the GIL. A job
        # abandoned at shutdown is no longer in the dict and must not come back into it.
        if job_id in self._progress:
            self._progress[job_id] = (done, text)

    async def wait_finished(self, job_id: str, timeout: float) -> Job | None:
        """Wait until the job is completed or failed; returns it then, or the job as it is at the timeout.

        During a stop, a job still queued will not run in this process: it is returned as it is at once.
        """
        event = self._finished.setdefault(job_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                event.clear()  # before reading, so a change made while we read still wakes us
                job = await self._store.get(job_id, with_transcript=True)
                if job is None or job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                    return job
                if self._stopping and job.status is JobStatus.QUEUED:
                    return job
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return job
                # The event is the fast path; the timeout covers a job finished by another process.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, self._poll_seconds * 5))
        finally:
            self._finished.pop(job_id, None)

    def _wake_waiters(self) -> None:
        for event in self._finished.values():
            event.set()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            # Clear before looking, so a job queued while we look still wakes us.
            self._wakeup.clear()
            registry = self._registry()
            if registry is None:
                await self._idle(self._poll_seconds)
                continue
            try:
                job = await self._store.claim_next()
            except SQLAlchemyError as exc:
                failures += 1
                log.error("Cannot take the next job from the database (%s); retrying", _db_reason(exc))
                await self._idle(self._backoff(failures))
                continue
            failures = 0
            if job is None:
                await self._idle(self._poll_seconds)
                continue
            self.busy += 1
            try:
                await self._process(job, registry)
            except _Abandoned:
                log.error("Job %s stays 'processing'; it will be re-queued at the next start", job.id)
            except Exception:  # a bug: keep the worker alive, and the job in the queue if the database allows
                log.exception("Worker error on job %s; putting it back in the queue", job.id)
                with contextlib.suppress(Exception):
                    await self._store.release(job.id)
                await self._idle(self._poll_seconds)
            finally:
                self.busy -= 1
                self._progress.pop(job.id, None)
                if event := self._finished.get(job.id):
                    event.set()

    async def _process(self, job: Job, registry: EngineRegistry) -> None:
        audio = await self._retrying(lambda: self._store.audio(job.id), f"read the audio of job {job.id}")
        if audio is None:
            await self._retrying(
                lambda: self._store.fail(job.id, "The job's audio is missing from the database"), f"fail job {job.id}"
            )
            return
        self._progress[job.id] = (0.0, "")
        work = _in_daemon_thread(
            _transcribe, audio, job, registry, lambda done, text: self._set_progress(job.id, done, text)
        )
        if not await self._finished_unless_abandoned(work):
            await self._retrying(lambda: self._store.release(job.id), f"put job {job.id} back in the queue")
            log.warning("Job %s put back in the queue, to run after the restart", job.id)
            return
        try:
            transcript = work.result()
        except (AudioError, UnknownModelError) as exc:
            log.warning("Job %s failed: %s", job.id, exc)
            error = str(exc)
        except Exception as exc:
            log.exception("Job %s failed", job.id)
            error = f"Transcription failed: {type(exc).__name__}: {exc}"
        else:
            await self._retrying(lambda: self._store.complete(job.id, transcript), f"store the result of {job.id}")
            log.info("Job %s completed (%.1f s of audio)", job.id, transcript.duration)
            return
        await self._retrying(lambda: self._store.fail(job.id, error), f"store the failure of job {job.id}")

    async def _finished_unless_abandoned(self, work: asyncio.Future[Transcript]) -> bool:
        abandon = asyncio.ensure_future(self._abandon.wait())
        try:
            await asyncio.wait({work, abandon}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abandon.cancel()
        if not work.done():
            work.cancel()  # the thread's result, when it comes, is dropped
            return False
        return True

    async def _retrying(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """Run a database operation until it succeeds: a failed write must neither kill the worker nor lose
        the job. Gives up (``_Abandoned``) only when a stop's grace period is over."""
        failures = 0
        while True:
            try:
                return await operation()
            except SQLAlchemyError as exc:
                failures += 1
                if self._abandon.is_set():
                    raise _Abandoned from exc
                pause = self._backoff(failures)
                log.error("Could not %s (%s); retrying in %g s", what, _db_reason(exc), pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._abandon.wait(), pause)

    def _backoff(self, failures: int) -> float:
        return min(self._retry_seconds * 2 ** (failures - 1), RETRY_MAX_SECONDS)


def _db_reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc)


def _in_daemon_thread(function: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """Run ``function`` in a thread of its own and return a future of its result.

    A daemon thread rather than an executor's: at exit Python joins executor threads, so a long transcription
    would hold a stopping server past its grace period; a daemon thread is simply left behind.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result, error = function(*args), None
        except Exception as exc:
            result, error = None, exc
        except BaseException as exc:  # SystemExit and the like must not escape into the event loop
            result, error = None, RuntimeError(f"the transcription thread was interrupted: {exc!r}")
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped without this job
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name="wazo-stt-transcribe", daemon=True).start()
    return future


def _transcribe(audio: bytes, job: Job, registry: EngineRegistry, progress: Callable[[float, str], None]) -> Transcript:
    engine = registry.resolve(job.model)
    decoded = decode_audio(audio)
    return engine.transcribe(decoded.samples, job.language, progress)
