"""What the routes share: settings, the job store, the workers, and the engines once they are loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from wazo_stt.api.errors import ApiError
from wazo_stt.config import Settings
from wazo_stt.engine.registry import EngineRegistry
from wazo_stt.jobs.store import JobStore
from wazo_stt.jobs.worker import WorkerPool


@dataclass
class ServerState:
    settings: Settings
    store: JobStore
    workers: WorkerPool
    registry: EngineRegistry | None = None
    load_error: str | None = None
    started_at: float = field(default=0.0)

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
