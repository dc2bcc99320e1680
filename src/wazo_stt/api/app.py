"""The FastAPI application: ``create_app()`` wires settings, store, workers and engines together."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from wazo_stt import __version__, host
from wazo_stt.api.auth import authenticate
from wazo_stt.api.errors import install_error_handlers
from wazo_stt.api.limits import BodySizeLimit
from wazo_stt.api.openapi import install_openapi
from wazo_stt.api.reload import reload_when_model_arrives
from wazo_stt.api.routes import service, transcriptions
from wazo_stt.api.schemas import job_status_body
from wazo_stt.api.state import ServerState
from wazo_stt.audio.fetch import FetchPolicy, _ssl_verify
from wazo_stt.auth import KeyRing
from wazo_stt.config import Settings
from wazo_stt.engine.base import ModelLoadError
from wazo_stt.engine.loader import load_engines
from wazo_stt.engine.registry import EngineRegistry
from wazo_stt.jobs.background import in_background_thread
from wazo_stt.jobs.concurrency import MemoryGate
from wazo_stt.jobs.retention import retention_loop
from wazo_stt.jobs.store import JobStore
from wazo_stt.jobs.worker import WorkerPool
from wazo_stt.logs import RequestIdMiddleware
from wazo_stt.metrics import Metrics
from wazo_stt.metrics import routes as metrics_routes
from wazo_stt.netguard import install_log_redaction
from wazo_stt.web import install_web
from wazo_stt.webhooks import RetryPolicy, WebhookDelivery, parse_secret

log = logging.getLogger(__name__)

# Room for the form fields around the audio itself.
FORM_OVERHEAD_BYTES = 1024 * 1024

EngineLoader = Callable[[Settings], EngineRegistry]


def create_app(
    settings: Settings | None = None, engine_loader: EngineLoader = load_engines, *, api: bool = True
) -> FastAPI:
    """The server; ``api=False`` makes a worker node (``wazo-stt worker``): workers, /health and /metrics, no API."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Python picks the directory for spooled uploads on first use, by writing a probe file: on a disk that
        # is full by then it finds none and raises a misleading FileNotFoundError (a 500). Pick it now.
        tempfile.gettempdir()
        # Migrates the schema first (once, under a lock, whoever starts first). Jobs a dead process left
        # 'processing' need no recovery here: their leases expire and any worker takes them back.
        store = await JobStore.open(
            database_url=settings.database_url or None,
            db_path=settings.db_path,
            max_queue_size=settings.max_queue_size,
            max_queue_audio_secs=settings.max_queue_audio_secs,
            busy_timeout_ms=settings.db_busy_timeout_ms,
            sqlite_synchronous=settings.sqlite_synchronous,
            lease_seconds=settings.lease_secs,
        )
        metrics = Metrics()
        workers = WorkerPool(
            store,
            lambda: state.registry,
            workers=host.at_once(settings.workers),
            metrics=metrics,
            memory_gate=MemoryGate(settings.job_memory_mb),
        )
        state = ServerState(
            settings=settings,
            store=store,
            workers=workers,
            started_at=time.time(),
            loop=asyncio.get_running_loop(),
            metrics=metrics,
        )
        app.state.wazo = state
        state.workers.start()
        background = [
            asyncio.create_task(_load(state, engine_loader), name="load-engines"),
            asyncio.create_task(retention_loop(store, settings.text_retention_days), name="retention"),
            asyncio.create_task(reload_when_model_arrives(state, engine_loader), name="reload-model"),
        ]
        if (delivery := _webhook_delivery(state)) is not None:  # worker nodes deliver webhooks too
            background.append(asyncio.create_task(delivery.run(), name="webhooks"))
        try:
            yield
        finally:
            await state.begin_shutdown()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await store.close()

    install_log_redaction()  # idempotent; also done by logs.setup_logging, but the app may be run without it
    keyring = KeyRing(settings.api_keys, settings.api_keys_file)
    _warn_if_open(settings, keyring)
    # Every route needs a key when keys are on, except api.auth.PUBLIC_PATHS (/health) and the page and docs of
    # web.install_web (static, no data: the page asks for the key itself). web.install_web serves /docs with
    # Swagger UI's assets from a package; ReDoc would need a CDN.
    app = FastAPI(
        title="wazo-stt",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(authenticate)],
        docs_url=None,
        redoc_url=None,
    )
    app.state.keyring = keyring
    install_error_handlers(app)
    install_openapi(app)
    # Every process counts for itself, a worker node included (admin keys only, when keys are on).
    app.include_router(metrics_routes.router)
    if not api:
        app.add_api_route("/health", service.health, methods=["GET"])
        return app
    install_web(app)
    app.include_router(transcriptions.router)
    app.include_router(service.router)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES, limit_mb=settings.max_upload_mb
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Job-Id", "Retry-After", "X-Request-Id"],
    )
    app.add_middleware(RequestIdMiddleware)  # outermost: every line of the request, CORS included, has its id
    return app


def _webhook_delivery(state: ServerState) -> WebhookDelivery | None:
    """The webhook delivery loop, when WEBHOOK_SECRET is set (without it no job gets a webhook)."""
    settings = state.settings
    secret = settings.webhook_secret.get_secret_value().strip()
    if not secret:
        return None
    store = state.store

    async def render(job_id: str) -> dict | None:
        job = await store.get(job_id)
        return None if job is None else job_status_body(job, None)

    return WebhookDelivery(
        store.outbox,
        render,
        key=parse_secret(secret),
        allowed_hosts=tuple(settings.url_allowed_host_list),
        verify=_ssl_verify(FetchPolicy.from_settings(settings)),
        timeout_seconds=settings.webhook_timeout_secs,
        policy=RetryPolicy(
            settings.webhook_retry_first_secs, settings.webhook_retry_max_secs, settings.webhook_retry_hours * 3600
        ),
        poll_seconds=settings.webhook_poll_secs,
        metrics=state.metrics,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warn_if_open(settings: Settings, keyring: KeyRing) -> None:
    """Any web page a LAN user opens could read transcripts: CORS '*', no keys, and reachable from the network."""
    if "*" in settings.cors_origin_list and not keyring.enabled and not _is_loopback(settings.host):
        log.warning(
            "CORS_ORIGINS=* with no API key on %s: any web page a user opens can read and submit transcripts. "
            "Set API_KEYS (or API_KEYS_FILE) and CORS_ORIGINS to your portal's origin; see docs/security.md",
            settings.host,
        )
    elif keyring.enabled:
        log.info("API keys on")


async def _load(state: ServerState, engine_loader: EngineLoader) -> None:
    """Load the models off the event loop, so /health can say "loading" meanwhile."""
    try:
        state.registry = await in_background_thread(engine_loader, state.settings, name="wazo-stt-load")
    except ModelLoadError as exc:
        state.load_error = str(exc)
        log.error("%s", exc)
        return
    except Exception as exc:
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("Could not load the model")
        return
    log.info(
        "Ready: serving %s; up to %d job(s) at once (WORKERS=%s)",
        ", ".join(state.registry.model_ids()),
        state.workers.size,
        state.settings.workers,
    )
    state.workers.notify()
