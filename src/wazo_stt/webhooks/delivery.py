"""The delivery loop: one asyncio task per process, beside the workers and never in their way.

It claims due events from the outbox, POSTs each (signed, to an address the guard checked just now, redirects
not followed), and records the outcome: delivered on a 2xx, else a retry with exponential backoff until
``give_up_after`` has passed since the job ended. A process that dies mid-delivery leaves its events locked for
a lease only; any process takes them again after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from wazo_stt.jobs.outbox import Outbox, WebhookEvent
from wazo_stt.logs import job_context
from wazo_stt.metrics import Metrics
from wazo_stt.netguard import pin
from wazo_stt.webhooks.signing import signed_headers
from wazo_stt.webhooks.target import CallbackRefused, check_callback_url

log = logging.getLogger(__name__)

# The job status body of a job id, or None when the job is gone (deleted, purged): its event is dropped.
Renderer = Callable[[str], Awaitable[dict[str, Any] | None]]
USER_AGENT = "wazo-stt-webhooks"
# How long a claimed event stays locked beyond the request timeout: room for recording the outcome.
LEASE_MARGIN_SECONDS = 30.0
BATCH = 10


@dataclass(frozen=True)
class RetryPolicy:
    """Pauses between attempts: ``first_seconds``, doubling, capped at ``max_seconds``; no attempt is made once
    ``give_up_after_seconds`` passed since the event was written (the defaults retry for a day: 5 s, 10 s, 20 s,
    ... then hourly)."""

    first_seconds: float = 5.0
    max_seconds: float = 3600.0
    give_up_after_seconds: float = 24 * 3600.0

    def delay(self, attempts_done: int) -> float:
        return min(self.first_seconds * 2 ** max(attempts_done - 1, 0), self.max_seconds)


class WebhookDelivery:
    def __init__(
        self,
        outbox: Outbox,
        render: Renderer,
        *,
        key: bytes,
        allowed_hosts: tuple[str, ...] = (),
        verify: ssl.SSLContext | bool = True,
        timeout_seconds: float = 10.0,
        policy: RetryPolicy | None = None,
        poll_seconds: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._outbox = outbox
        self._render = render
        self._key = key
        self._allowed_hosts = allowed_hosts
        self._verify = verify
        self._timeout = timeout_seconds
        self._policy = policy or RetryPolicy()
        self._poll_seconds = poll_seconds
        self._metrics = metrics or Metrics()

    async def run(self) -> None:
        """Deliver until cancelled; a failing database only pauses the loop."""
        async with httpx.AsyncClient(
            verify=self._verify,
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        ) as client:
            while True:
                try:
                    events = await self._outbox.claim_due(BATCH, self._timeout + LEASE_MARGIN_SECONDS)
                except Exception:
                    log.exception("Cannot read the webhook outbox; retrying")
                    events = []
                if not events:
                    await asyncio.sleep(self._poll_seconds)
                    continue
                await asyncio.gather(*(self._deliver_logged(client, event) for event in events))

    async def _deliver_logged(self, client: httpx.AsyncClient, event: WebhookEvent) -> None:
        with job_context(event.job_id):
            try:
                await self.deliver(client, event)
            except Exception:  # a bug or the database: the lease runs out and the event is tried again
                log.exception("Webhook %s: delivery failed unexpectedly", event.id)

    async def deliver(self, client: httpx.AsyncClient, event: WebhookEvent) -> None:
        body = await self._render(event.job_id)
        if body is None:
            await self._outbox.give_up(event.id, "the job no longer exists")
            return
        data = json.dumps(body, ensure_ascii=False).encode()
        started = time.monotonic()
        error = await self._post(client, event, data)
        self._metrics.webhook_time.observe(time.monotonic() - started)
        if error is None:
            await self._outbox.delivered(event.id)
            self._metrics.webhook_attempts.labels("delivered").inc()
            log.info("Webhook %s delivered (%s, attempt %d)", event.id, event.event_type, event.attempts + 1)
            return
        now = self._outbox.now()
        retry_at = now + self._policy.delay(event.attempts + 1)
        if retry_at - event.created_at > self._policy.give_up_after_seconds:
            await self._outbox.give_up(event.id, error)
            self._metrics.webhook_attempts.labels("gave_up").inc()
            log.error("Webhook %s: giving up after %d attempts (%s)", event.id, event.attempts + 1, error)
            return
        await self._outbox.retry_at(event.id, retry_at, error)
        self._metrics.webhook_attempts.labels("retry").inc()
        log.warning("Webhook %s: %s; retrying in %.0f s", event.id, error, retry_at - now)

    async def _post(self, client: httpx.AsyncClient, event: WebhookEvent, data: bytes) -> str | None:
        """POST once; None on success, else a short reason (for the job status: no URL, no body)."""
        try:
            url, addresses = await check_callback_url(event.url, self._allowed_hosts)
        except CallbackRefused as exc:
            return exc.message
        signed = signed_headers(self._key, event.id, int(time.time()), data)
        for index, address in enumerate(addresses):
            target = pin(url, address)  # the address the guard checked, not a second DNS answer
            try:
                response = await client.post(
                    target.url, content=data, headers={**signed, **target.headers}, extensions=target.extensions
                )
            except httpx.ConnectError:
                if index == len(addresses) - 1:
                    return "connection failed"
                continue
            except httpx.TimeoutException:
                return f"no answer within {self._timeout:g} s"
            except httpx.HTTPError as exc:
                return f"transport error ({type(exc).__name__})"
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
            return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return "connection failed"
