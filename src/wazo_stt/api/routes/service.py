"""``/health`` and ``/v1/models``: is the server ready, and which models does it serve; and a clear refusal of
``/v1/audio/translations``, which OpenAI clients may try."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from wazo_stt import __version__
from wazo_stt.api.errors import ApiError, error_body
from wazo_stt.api.openapi import errors
from wazo_stt.api.state import ServerState, server_state
from wazo_stt.domain import JobStatus
from wazo_stt.engine.registry import OPENAI_ALIAS, EngineRegistry, UnknownModelError

router = APIRouter()


@router.get("/health", responses={503: {"description": "Loading, or the model is unavailable"}})
async def health(state: ServerState = Depends(server_state)) -> JSONResponse:
    counts = await state.store.counts()
    body = {
        "status": "healthy",
        "model": state.registry.default_id if state.registry else state.settings.model_name,
        "version": __version__,
        "queue_length": counts[JobStatus.QUEUED],
        "db_stats": {
            "total": sum(counts.values()),
            "completed": counts[JobStatus.COMPLETED],
            "failed": counts[JobStatus.FAILED],
            "pending": counts[JobStatus.QUEUED] + counts[JobStatus.PROCESSING],
        },
    }
    if state.registry is not None and state.registry.not_loaded:
        # Serving, so healthy (200): but a configured engine is missing, and requests for it will get a 400.
        body["not_loaded"] = state.registry.not_loaded
    if state.registry is not None and state.registry.fallback:
        # Serving (200), but with the embedded English-only model: the operator must see why and what to do.
        body["fallback"] = state.registry.fallback
    if state.registry is None:
        try:
            state.ready_registry()
        except ApiError as exc:
            body.update(error_body(503, exc.message, code=exc.code))
            body["status"] = "loading" if exc.code == "model_loading" else "unavailable"
            return JSONResponse(body, status_code=503)
    return JSONResponse(body)


def _model_card(model_id: str, created: int, registry: EngineRegistry) -> dict:
    owner = "openai-compatible-alias" if model_id == OPENAI_ALIAS else "wazo-stt"
    card = {"id": model_id, "object": "model", "created": created, "owned_by": owner}
    if registry.fallback and registry.resolve(model_id).model_id == registry.default_id:
        card["fallback"] = registry.fallback  # the embedded English-only stand-in, said where clients look
    return card


@router.get("/v1/models", responses=errors(503))
async def list_models(state: ServerState = Depends(server_state)) -> dict:
    registry = state.ready_registry()
    created = int(state.started_at)
    return {"object": "list", "data": [_model_card(m, created, registry) for m in registry.model_ids()]}


@router.get("/v1/models/{model_id}", responses=errors(404, 503))
async def get_model(model_id: str, state: ServerState = Depends(server_state)) -> dict:
    registry = state.ready_registry()
    try:
        registry.resolve(model_id)
    except UnknownModelError as exc:
        raise ApiError(404, str(exc), param="model", code="model_not_found") from None
    return _model_card(model_id, int(state.started_at), registry)


# Not in /openapi.json: it is not an operation this server offers, only a signpost for clients that try it.
@router.post("/v1/audio/translations", include_in_schema=False)
async def translations() -> JSONResponse:
    """Not a 404: the client reached the right server and must learn what it can do instead."""
    raise ApiError(
        400,
        "Translation (speech to English text) is not supported by this server; "
        "it transcribes in the spoken language: use POST /v1/audio/transcriptions",
        code="unsupported_endpoint",
    )
