"""Who is waiting for a job to change, and how they learn it did, across processes.

A change made in this process wakes its waiters at once. A change made by another process (a worker on another
machine) arrives by PostgreSQL ``LISTEN``/``NOTIFY`` when the database is PostgreSQL, and by polling otherwise
(SQLite: every ``poll_seconds``) or while the listening connection is down. Waiters always re-read the job: an
event says "look again", never what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from wazo_stt.jobs.database import NOTIFY_CHANNEL, Database

log = logging.getLogger(__name__)

# With a live LISTEN connection waiters still look again this often, in case a notification was lost.
LISTENING_POLL_SECONDS = 5.0
RECONNECT_SECONDS = 2.0


class JobWatch:
    """One waiter's view of one job: ``wait`` returns when the job may have changed (or after the timeout)."""

    def __init__(self, events: JobEvents) -> None:
        self._events = events
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (less when only polling can tell); True when woken by a change. Clears
        the flag, so a change that lands while the caller re-reads still wakes the next wait."""
        try:
            await asyncio.wait_for(self._event.wait(), min(timeout, self._events.poll_interval))
            return True
        except TimeoutError:
            return False
        finally:
            self._event.clear()


class JobEvents:
    def __init__(self, db: Database, *, poll_seconds: float = 1.0) -> None:
        self._db = db
        self._poll_seconds = poll_seconds
        self._watches: dict[str, set[JobWatch]] = defaultdict(set)
        self._on_queued: list[Callable[[], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._listening = False

    @property
    def listening(self) -> bool:
        """Whether other processes' changes arrive as they happen (a live LISTEN connection)."""
        return self._listening

    @property
    def poll_interval(self) -> float:
        return LISTENING_POLL_SECONDS if self._listening else self._poll_seconds

    def start(self) -> None:
        """Listen for other processes' changes (PostgreSQL only); call from a running loop."""
        if self._db.is_postgresql and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="job-events-listen")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    def publish(self, job_id: str, *, queued: bool = False) -> None:
        for watch in self._watches.get(job_id, ()):
            watch.set()
        if queued:
            for callback in self._on_queued:
                callback()

    def on_queued(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) whenever a job is queued in any process: idle workers wake at once
        instead of at their next poll."""
        self._on_queued.append(callback)

    def publish_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.set()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[JobWatch]:
        """Register before reading the job, so that a change made while reading is not missed."""
        watch = JobWatch(self)
        self._watches[job_id].add(watch)
        try:
            yield watch
        finally:
            self._watches[job_id].discard(watch)
            if not self._watches[job_id]:
                del self._watches[job_id]

    async def wait_changed(self, job_id: str, timeout: float) -> bool:
        """Wait until ``job_id`` changes (True) or ``timeout`` passes (False, at the latest after one poll
        interval). For a caller that re-reads the job after each return."""
        with self.watch(job_id) as watch:
            return await watch.wait(timeout)

    async def _listen(self) -> None:
        import asyncpg

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            job_id, _, kind = payload.partition(" ")
            self.publish(job_id, queued=kind == "queued")

        while True:
            connection = None
            try:
                connection = await asyncpg.connect(self._db.asyncpg_dsn())
                await connection.add_listener(NOTIFY_CHANNEL, on_notify)
                self._listening = True
                self.publish_all()  # anything missed while not listening: look again
                while not connection.is_closed():
                    await asyncio.sleep(RECONNECT_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Cannot listen for job changes (%s); polling meanwhile", exc)
            finally:
                self._listening = False
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(connection.close(timeout=2))
            await asyncio.sleep(RECONNECT_SECONDS)
