"""The HTTP side of webhooks: a submission's ``callback_url`` checked (a 400 when the guard refuses it), and
the ``webhook`` part of a job's status (where its delivery stands)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wazo_stt.api.errors import ApiError
from wazo_stt.jobs.store import Job
from wazo_stt.netguard import redact_url
from wazo_stt.webhooks import CallbackRefused, check_callback_url

if TYPE_CHECKING:
    from wazo_stt.api.state import ServerState


async def job_callback_url(given: str | None, state: ServerState) -> str | None:
    """The URL the job's webhook goes to: the submission's ``callback_url``, else ``WEBHOOK_URL``, else none."""
    settings = state.settings
    if given is None:
        return settings.webhook_url.strip() or None
    if not settings.webhook_secret.get_secret_value().strip():
        raise ApiError(
            400,
            "This server sends no webhooks: WEBHOOK_SECRET is not set",
            param="callback_url",
            code="webhooks_disabled",
        )
    try:
        await check_callback_url(given, tuple(settings.url_allowed_host_list))
    except CallbackRefused as exc:
        raise ApiError(400, exc.message, param="callback_url", code="invalid_callback_url") from None
    return given


async def webhook_status(job: Job, state: ServerState) -> dict[str, Any] | None:
    """``{"url", "status", "attempts", "last_error", "next_attempt_at", "delivered_at"}`` for a job with a
    callback (status ``waiting`` until the job ends), None for a job without one. The URL is redacted."""
    if job.callback_url is None:
        return None
    delivery = await state.store.outbox.state_for_job(job.id)
    body: dict[str, Any] = {"url": redact_url(job.callback_url), "status": "waiting", "attempts": 0}
    if delivery is not None:
        body.update(
            status=delivery.status,
            attempts=delivery.attempts,
            last_error=delivery.last_error,
            next_attempt_at=_seconds(delivery.next_attempt_at),
            delivered_at=_seconds(delivery.delivered_at),
        )
    return body


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)
