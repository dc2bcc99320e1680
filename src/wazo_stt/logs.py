"""Logging set-up for the server, done once at start-up (never at import), and the context every line carries.

Lines an operator can search: plain text by default, one JSON object per line with ``LOG_FORMAT=json``.

Every record carries the job it is about, the tenant when known and the HTTP request it belongs to, taken from
context variables: the request-id middleware sets the request's, the worker sets the job's while it runs it.
asyncio copies context variables into the tasks a request or a worker starts, and the worker copies them into
its transcription thread, so a line logged deep in the engine still names its job.

Three rules keep personal data and secrets out of the log, whatever ``LOG_LEVEL`` says:

* **Driver loggers stay at WARNING.** At DEBUG, SQLAlchemy echoes every statement with its parameters and
  aiosqlite every call with its result: transcript text, by the hundreds of lines per job. Those loggers (and
  other chatty libraries') are held at WARNING unless named in ``LOG_LEVELS`` (``sqlalchemy.engine=debug``),
  which is an explicit, per-logger choice for a debugging session.
* **URL secrets are redacted** on the HTTP client's loggers (:func:`wazo_stt.netguard.install_log_redaction`),
  and every message goes through the same redaction once more in our handler, whoever logged it.
* Our own code never logs transcript text at any level (tests/test_auth_logs.py checks a job run at DEBUG).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wazo_stt.config import Settings
from wazo_stt.netguard import install_log_redaction, redact_text

__all__ = [
    "QUIET_LOGGERS",
    "RequestIdMiddleware",
    "bind_job",
    "bind_tenant",
    "job_context",
    "job_id_var",
    "setup_logging",
]

LogFormat = Literal["plain", "json"]

# Libraries that log data (SQL parameters, query results, HTTP headers and bodies) at INFO or DEBUG.
QUIET_LOGGERS = (
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "alembic",
    "httpcore",
    "hpack",
    "h2",
    "h11",
    "multipart",
    "python_multipart",
    "urllib3",
    "filelock",
    "huggingface_hub",
    "faster_whisper",
    "asyncio",
)

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("wazo_job_id", default=None)
tenant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("wazo_tenant", default=None)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("wazo_request_id", default=None)

REQUEST_ID_HEADER = "X-Request-Id"
# A client's own request id is kept when it looks like an id (what proxies and tracing headers send), so a log
# search can follow one request from the PBX through the proxy to here; anything else is replaced.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


@contextlib.contextmanager
def job_context(job_id: str, tenant: str | None = None) -> Iterator[None]:
    """Tag every record logged inside the block with the job (and its tenant)."""
    job_token = job_id_var.set(job_id)
    tenant_token = tenant_var.set(tenant) if tenant is not None else None
    try:
        yield
    finally:
        if tenant_token is not None:
            tenant_var.reset(tenant_token)
        job_id_var.reset(job_token)


def bind_job(job_id: str) -> None:
    """Tag the rest of the current request's records with its job, once the job exists."""
    job_id_var.set(job_id)


def bind_tenant(tenant: str) -> None:
    """Tag the rest of the current request's records with the caller's tenant (none: the local tenant)."""
    tenant_var.set(tenant or None)


class ContextFilter(logging.Filter):
    """Copy the context variables onto each record (``job_id``, ``tenant``, ``request_id``, ``context``) and
    redact URLs in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = job_id_var.get()
        record.tenant = tenant_var.get()
        record.request_id = request_id_var.get()
        parts = [f"{key}={value}" for key in ("job_id", "tenant", "request_id") if (value := getattr(record, key))]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        try:
            message = record.getMessage()
        except Exception:  # a broken record (wrong arguments) is logged as it is rather than lost
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and ``job_id``,
    ``tenant``, ``request_id`` when known, ``exception`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "tenant", "request_id"):
            if (value := getattr(record, key, None)) is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def _iso_time(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def log_handler(
    log_format: LogFormat, stream: Any = None, *, handler_class: type[logging.StreamHandler] = logging.StreamHandler
) -> logging.Handler:
    """A handler writing ``log_format`` lines, with the context filter attached."""
    handler = handler_class(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(ContextFilter())
    return handler


class _ServerHandler(logging.StreamHandler):
    """The handler :func:`setup_logging` installs (told apart from others', so a second call replaces it)."""


def setup_logging(settings: Settings) -> None:
    """Send every logger (ours, uvicorn's, the libraries') to one stderr handler in ``LOG_FORMAT``, at
    ``LOG_LEVEL``; quiet the drivers, apply ``LOG_LEVELS``, redact URLs."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ServerHandler)]:
        root.removeHandler(old)
    root.addHandler(log_handler(settings.log_format, handler_class=_ServerHandler))
    root.setLevel(settings.log_level.upper())
    explicit = settings.log_level_map
    for name in QUIET_LOGGERS:
        if name not in explicit:
            logging.getLogger(name).setLevel(logging.WARNING)
    for name, level in explicit.items():
        logging.getLogger(name).setLevel(level)
    install_log_redaction()


access_log = logging.getLogger("wazo_stt.access")


class RequestIdMiddleware:
    """Give each HTTP request an id: the client's ``X-Request-Id`` when it sends a sensible one, a new one
    otherwise. It tags the request's log lines and is returned in the response's ``X-Request-Id`` header.

    It also writes the access line (method, path without its query string, status, duration) in place of
    uvicorn's, which is logged outside the request's context and so could name neither the request nor the job.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        job_token = job_id_var.set(None)
        tenant_token = tenant_var.set(None)

        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            access_log.info("%s %s %d %.0f ms", scope["method"], scope["path"], status, elapsed_ms)
            tenant_var.reset(tenant_token)
            job_id_var.reset(job_token)
            request_id_var.reset(token)


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            if _CLIENT_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex
