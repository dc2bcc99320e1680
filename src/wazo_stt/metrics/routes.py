"""``GET /metrics`` in Prometheus' text format, and the refusal hook the error handlers call."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from wazo_stt.api.auth import authenticate
from wazo_stt.api.errors import ApiError
from wazo_stt.api.state import ServerState, server_state
from wazo_stt.auth import Principal


async def admin_only(principal: Principal = Depends(authenticate)) -> None:
    """The whole cluster's numbers are for operators: with API keys on, an ``admin`` key (keys off: everyone)."""
    if not principal.admin:
        raise ApiError(403, "/metrics needs an admin key", code="admin_required")


router = APIRouter(tags=["operations"], dependencies=[Depends(admin_only)])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics of this process and of the queue")
async def metrics(state: ServerState = Depends(server_state)) -> Response:
    await refresh_gauges(state)
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def refresh_gauges(state: ServerState) -> None:
    """Set the gauges that describe shared state from the database, at scrape time."""
    m = state.metrics
    counts = await state.store.counts()
    m.jobs_queued.set(counts["queued"])
    m.jobs_processing.set(counts["processing"])
    oldest = await state.store.oldest_queued_at()
    m.oldest_queued_age.set(0.0 if oldest is None else max(time.time() - oldest, 0.0))
    m.webhooks_pending.set(await state.store.outbox.pending_count())
    models = state.registry.model_ids() if state.registry is not None else []
    for model in models:
        m.engine_loaded.labels(model).set(1)
