"""What the routes share: settings, the job store, the workers, and the engines once they are loaded."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from fastapi import Request

from wazo_stt.api.errors import ApiError
from wazo_stt.api.rate_limit import RateLimiter
from wazo_stt.audio.budget import DecodeBudget
from wazo_stt.config import Settings
from wazo_stt.engine.registry import EngineRegistry
from wazo_stt.jobs.store import JobStore
from wazo_stt.jobs.worker import WorkerPool
from wazo_stt.metrics import Metrics


@dataclass
class ServerState:
    settings: Settings
    store: JobStore
    workers: WorkerPool
    registry: EngineRegistry | None = None
    load_error: str | None = None
    started_at: float = field(default=0.0)
    loop: asyncio.AbstractEventLoop | None = None
    metrics: Metrics = field(default_factory=Metrics)
    decode_budget: DecodeBudget = field(init=False)
    rate_limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.decode_budget = DecodeBudget(self.settings.decode_memory_mb, self.settings.decode_wait_secs)
        self.rate_limiter = RateLimiter(self.settings.rate_limit_per_minute)

    def begin_shutdown(self) -> asyncio.Task[None]:
        """Stop taking jobs and give the running one SHUTDOWN_GRACE_SECS; idempotent, returns the stop's task.

        Called as soon as the server is told to stop (before the HTTP server waits for open requests, so that
        synchronous requests waiting for a job get their answer), and again by the lifespan's end.
        """
        return self.workers.begin_stop(self.settings.shutdown_grace_secs)

    def begin_shutdown_threadsafe(self) -> None:
        """``begin_shutdown`` from a signal handler or another thread."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing left to stop
                self.loop.call_soon_threadsafe(self.begin_shutdown)

    def ready_registry(self) -> EngineRegistry:
        """The engines, or a 503 that says why there are none (still loading, or failed to load)."""
        if self.registry is not None:
            return self.registry
        if self.load_error:
            raise ApiError(503, f"The model is not available: {self.load_error}", code="model_unavailable")
        raise ApiError(
            503,
            "The model is still loading; retry in a few seconds",
            code="model_loading",
            headers={"Retry-After": "5"},
        )


def server_state(request: Request) -> ServerState:
    return request.app.state.wazo
