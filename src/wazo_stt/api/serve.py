"""Run the app under uvicorn with a graceful stop: what ``wazo-stt serve`` does.

Plain ``uvicorn.run`` stops in an order that does not suit a job server: on SIGTERM it first waits for every
open request (with no limit by default) and only then tells the app to stop. A synchronous request waiting for
its job would hold the stop for as long as the job takes (up to SYNC_TIMEOUT_SECS), and the worker would keep
taking new jobs meanwhile. Here the signal also starts the app's own stop at once:

1. uvicorn closes the listening socket (no new connection) and idle keep-alive connections;
2. the workers take no new job; a submission still arriving gets a 503, nothing queued; a synchronous request
   waiting for a queued job gets a 503 naming its job (kept in the queue, ``X-Job-Id`` header);
3. the running job gets SHUTDOWN_GRACE_SECS to finish (its synchronous request then gets the transcript), else
   it goes back to the queue, its attempt not counted, and its request gets the 503;
4. uvicorn waits for the open requests (bounded: the grace period plus a margin), the app closes the database,
   and the process exits with status 0.
"""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn
from fastapi import FastAPI

from wazo_stt.api.app import EngineLoader, create_app
from wazo_stt.api.http_limits import uvicorn_limits
from wazo_stt.config import Settings
from wazo_stt.engine.loader import load_engines

# How long uvicorn waits for open requests beyond the grace period: the answers to synchronous requests are
# written once the running job finished or was put back, which the grace period bounds.
RESPONSE_MARGIN_SECONDS = 5.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app to stop as soon as the signal comes (not after open requests)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        state = getattr(self._app.state, "wazo", None)
        if state is not None:  # None: still starting up; the lifespan's end stops the workers then
            state.begin_shutdown_threadsafe()


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    engine_loader: EngineLoader = load_engines,
    api: bool = True,
) -> int:
    """Serve until SIGTERM or SIGINT, stop gracefully, and return the exit status (0 after a graceful stop).
    ``api=False``: a worker node, whose HTTP port answers /health and /metrics only."""
    app = create_app(settings, engine_loader, api=api)
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through the root handler, in LOG_FORMAT (wazo_stt.logs)
        access_log=False,  # wazo_stt.logs writes it, with the request's and the job's ids
        timeout_graceful_shutdown=settings.shutdown_grace_secs + RESPONSE_MARGIN_SECONDS,
        **uvicorn_limits(settings),
    )
    server = _Server(config, app)
    # uvicorn re-raises the signal it stopped on once it is done, so that the default action (death by
    # SIGTERM, KeyboardInterrupt's traceback) follows; the stop was graceful, so catch it and exit 0 instead.
    previous = {sig: signal.signal(sig, _already_handled) for sig in _STOP_SIGNALS}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _already_handled(_sig: int, _frame: FrameType | None) -> None:
    """Where uvicorn's re-raised signal lands: the stop it asked for is done."""
