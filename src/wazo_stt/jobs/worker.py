"""Workers: take the next queued job from the store (in the fair order of jobs/fair_order.py), transcribe it off
the event loop, store the result.

Decoding and inference are CPU-bound and blocking, so they run in a thread; the event loop stays free and a
status poll answers in milliseconds while an hour of audio is being transcribed.

A worker never dies and never drops a job: a database that refuses a write (locked past its busy timeout, disk
full, server restarting) is retried with a growing pause, with the transcript kept in memory, so nothing is
transcribed twice. While a job runs its lease is renewed (with the progress, at most once a second); a worker that
lost its lease (paused past it: another worker took the job over; or the job was deleted, which refuses the
renewal) stops and writes nothing, and its transcription thread stops at its next progress report. On a graceful
stop the running job may finish within the grace period; past it, the job goes back to the queue with its attempt
not counted, and the thread doing the work is abandoned (a daemon: it cannot hold the exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from wazo_stt.audio import AudioError, decode_audio
from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.engine.registry import EngineRegistry, UnknownModelError
from wazo_stt.jobs.background import in_background_thread
from wazo_stt.jobs.concurrency import MemoryGate
from wazo_stt.jobs.records import Job, StoreUnavailableError
from wazo_stt.jobs.store import JobStore
from wazo_stt.logs import job_id_var
from wazo_stt.metrics import Metrics, failure_reason

log = logging.getLogger(__name__)

T = TypeVar("T")

# Pauses between retries of a database operation that failed: from the first to the cap, doubling.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# Once the grace period is over, how long the workers get to put their jobs back in the queue.
ABANDON_SECONDS = 10.0
# Progress is written (with the lease's renewal) at most this often.
PROGRESS_WRITE_SECONDS = 1.0


class _Abandoned(Exception):
    """The grace period ended while this worker still held its job."""


class _Dropped(Exception):
    """Raised in a transcription thread whose job this worker no longer holds (deleted, taken over, abandoned),
    at its next progress report: the CPU goes to the next job instead of a transcript nobody will store."""


class WorkerPool:
    def __init__(
        self,
        store: JobStore,
        registry: Callable[[], EngineRegistry | None],
        *,
        workers: int = 1,
        poll_seconds: float = 1.0,
        retry_seconds: float = RETRY_FIRST_SECONDS,
        metrics: Metrics | None = None,
        memory_gate: MemoryGate | None = None,
    ) -> None:
        self._store = store
        self._memory_gate = memory_gate
        self._metrics = metrics or Metrics()
        self._registry = registry
        self._workers = workers
        self._poll_seconds = poll_seconds
        self._retry_seconds = retry_seconds
        self._wakeup = asyncio.Event()
        self._abandon = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None
        self.busy = 0  # jobs being transcribed right now
        self._taking = 0  # workers asking the store for a job right now (each may come back with one)
        # Names the lease holder in the database: which machine, which process, which pool.
        self.worker_id = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Job id -> (fraction of its speech recognised, text so far) while it runs here: set by the transcription
        # thread, written to the database with the lease's renewal (throttled).
        self._progress: dict[str, tuple[float, str | None]] = {}

    @property
    def size(self) -> int:
        """How many jobs this process may transcribe at once (the memory gate may run fewer)."""
        return self._workers

    @property
    def stopping(self) -> bool:
        """True once a stop began: no job is taken any more, and waiting for a queued job is pointless."""
        return self._stopping

    def start(self) -> None:
        if self._workers:
            self._store.events.on_queued(self.notify)  # a job queued by any server wakes an idle worker here
        self._tasks = [
            asyncio.create_task(self._run(f"{self.worker_id}/{i}"), name=f"worker-{i}") for i in range(self._workers)
        ]

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
            for task in pending:  # stuck on the database: its job stays processing, taken back when its lease expires
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._wake_waiters()

    def _set_progress(self, job_id: str, done: float, text: str | None = None) -> None:
        # Called from the transcription thread; one dict item assignment is atomic under the GIL. A job this
        # worker dropped (deleted, lease lost, abandoned at shutdown) is no longer in the dict: its thread stops.
        if job_id not in self._progress:
            raise _Dropped(job_id)
        self._progress[job_id] = (done, text)

    async def wait_finished(self, job_id: str, timeout: float) -> Job | None:
        """Wait until the job is completed or failed; returns it then, or the job as it is at the timeout.

        Learns of a job finished by another process (a worker elsewhere) from the store's change events
        (PostgreSQL NOTIFY, or polling). During a stop, a job still queued will not run in this process when this
        process has workers: it is returned as it is at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._store.watch(job_id) as changed:
            while True:
                job = await self._store.get(job_id, with_transcript=True)
                if job is None or job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                    return job
                if self._stopping and job.status is JobStatus.QUEUED:
                    return job
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return job
                await changed.wait(remaining)

    def _wake_waiters(self) -> None:
        self._store.events.publish_all()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    async def _run(self, worker_id: str) -> None:
        failures = 0
        while not self._stopping:
            # Clear before looking, so a job queued while we look still wakes us.
            self._wakeup.clear()
            registry = self._registry()
            if registry is None or not self._may_take_another():
                await self._idle(self._poll_seconds)
                continue
            self._taking += 1
            try:
                job = await self._store.claim_next(worker_id)
            except StoreUnavailableError as exc:
                job, unavailable = None, exc
            else:
                unavailable = None
            finally:  # no await between here and `busy += 1`: the count never misses a job being taken
                self._taking -= 1
            if unavailable is not None:
                failures += 1
                log.error("Cannot take the next job from the database (%s); retrying", unavailable)
                await self._idle(self._backoff(failures))
                continue
            failures = 0
            if job is None:
                await self._idle(self._poll_seconds)
                continue
            self.busy += 1
            job_token = job_id_var.set(job.id)  # tags every line about this job, the engine's included
            self._metrics.job_started(job.created_at, job.started_at)
            try:
                await self._process(job, registry, worker_id)
            except _Abandoned:
                log.error("Job %s stays 'processing'; another worker takes it back when its lease expires", job.id)
            except Exception as exc:  # its result could not be stored, or a bug: counted, so it never loops
                log.exception("Worker error on job %s", job.id)
                reason = f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(Exception):  # else the lease expires and the job is taken back
                    await self._store.retry_later(job.id, worker_id, reason)
                await self._idle(self._poll_seconds)
            finally:
                job_id_var.reset(job_token)
                self.busy -= 1
                self._progress.pop(job.id, None)

    def _may_take_another(self) -> bool:
        """A job alongside the ones running (or being taken) here only while the memory gate allows it."""
        if not (self.busy or self._taking) or self._memory_gate is None:
            return True
        return self._memory_gate.allows_another()

    async def _process(self, job: Job, registry: EngineRegistry, worker_id: str) -> None:
        audio = await self._retrying(lambda: self._store.audio(job.id), f"read the audio of job {job.id}")
        if audio is None:
            await self._retrying(
                lambda: self._store.fail(job.id, worker_id, "The job's audio is missing from the database"),
                f"fail job {job.id}",
            )
            self._metrics.job_failed(job.model, failure_reason(None))
            return
        self._progress[job.id] = (0.0, None)
        started = time.monotonic()
        work = in_background_thread(
            _transcribe,
            audio,
            job,
            registry,
            lambda done, text=None: self._set_progress(job.id, done, text),
            self._metrics,
            name="wazo-stt-transcribe",
        )
        outcome = await self._run_under_lease(work, job.id, worker_id)
        if outcome == "abandoned":
            await self._retrying(lambda: self._store.release(job.id, worker_id), f"put job {job.id} back in the queue")
            log.warning("Job %s put back in the queue, for another worker or after the restart", job.id)
            return
        if outcome == "lost":
            log.warning(
                "Job %s: lease lost (deleted, or taken over by another worker); its work here is dropped", job.id
            )
            self._progress.pop(job.id, None)  # its thread stops at its next progress report
            return
        try:
            transcript = work.result()
        except (AudioError, UnknownModelError) as exc:
            log.warning("Job %s failed: %s", job.id, exc)
            error, reason = str(exc), failure_reason(exc)
        except Exception as exc:
            log.exception("Job %s failed", job.id)
            error, reason = f"Transcription failed: {type(exc).__name__}: {exc}", failure_reason(exc)
        else:
            stored = await self._retrying(
                lambda: self._store.complete(job.id, worker_id, transcript), f"store the result of {job.id}"
            )
            if stored:
                self._metrics.job_completed(job.model, transcript.duration, time.monotonic() - started)
                log.info("Job %s completed (%.1f s of audio)", job.id, transcript.duration)
            else:
                log.warning(
                    "Job %s: lease lost before its result was stored (deleted, or taken over); nothing written", job.id
                )
            return
        if await self._retrying(
            lambda: self._store.fail(job.id, worker_id, error), f"store the failure of job {job.id}"
        ):
            self._metrics.job_failed(job.model, reason)

    async def _run_under_lease(self, work: asyncio.Future[Transcript], job_id: str, worker_id: str) -> str:
        """Wait for the transcription, renewing the lease (and writing progress) meanwhile. Returns "done",
        "abandoned" (the stop's grace period ended) or "lost" (another worker holds the job now)."""
        abandon = asyncio.ensure_future(self._abandon.wait())
        interval = min(PROGRESS_WRITE_SECONDS, self._store.lease_seconds / 3)
        written: tuple[float, str | None] | None = None
        try:
            while not work.done():
                await asyncio.wait({work, abandon}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                if work.done():
                    break
                if abandon.done():
                    work.cancel()  # the thread's result, when it comes, is dropped
                    return "abandoned"
                current = self._progress.get(job_id)
                changed = current if current != written else None
                try:
                    held = await self._store.renew(
                        job_id,
                        worker_id,
                        progress=changed[0] if changed else None,
                        partial_text=changed[1] if changed else None,
                    )
                except StoreUnavailableError as exc:  # keep working: the lease may still be ours when it answers
                    log.error("Cannot renew the lease of job %s (%s)", job_id, exc)
                    continue
                if not held:
                    work.cancel()
                    return "lost"
                written = current
        finally:
            abandon.cancel()
        return "done"

    async def _retrying(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """Run a database operation until it succeeds: a failed write must neither kill the worker nor lose
        the job. Gives up (``_Abandoned``) only when a stop's grace period is over."""
        failures = 0
        while True:
            try:
                return await operation()
            except StoreUnavailableError as exc:
                failures += 1
                if self._abandon.is_set():
                    raise _Abandoned from exc
                pause = self._backoff(failures)
                log.error("Could not %s (%s); retrying in %g s", what, exc, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._abandon.wait(), pause)

    def _backoff(self, failures: int) -> float:
        return min(self._retry_seconds * 2 ** (failures - 1), RETRY_MAX_SECONDS)


def _transcribe(
    audio: bytes, job: Job, registry: EngineRegistry, progress: Callable[..., None], metrics: Metrics
) -> Transcript:
    engine = registry.resolve(job.model)
    with metrics.decode_time.time():
        decoded = decode_audio(audio)
    return engine.transcribe(decoded.samples, job.language, progress)
