"""Counting refused submissions where the error answer is written: the error handlers and the ASGI middleware
that answer before any route runs (body too large, and later a missing API key)."""

from __future__ import annotations

from starlette.types import Scope

SUBMISSION_PATH = "/v1/audio/transcriptions"


def count_refusal(scope: Scope, status: int, reason: str | None) -> None:
    """Count a refused submission (an error answer to ``POST /v1/audio/transcriptions``), by status and reason
    (the OpenAI error ``code``). Called by the error handlers and the body-size middleware."""
    if not (400 <= status < 500 or status == 503):  # 503: not taken now (loading, stopping); nothing queued
        return
    if scope.get("method") != "POST" or scope.get("path", "").rstrip("/") != SUBMISSION_PATH:
        return
    state = getattr(getattr(scope.get("app"), "state", None), "wazo", None)
    if state is not None:
        state.metrics.submissions_refused.labels(str(status), reason or "invalid_request").inc()
