"""Every error leaves the server in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from wazo_stt.jobs.records import StoreUnavailableError
from wazo_stt.metrics import count_refusal

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers


def error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def error_response(
    status: int, message: str, *, param: str | None = None, code: str | None = None, headers=None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        count_refusal(request.scope, exc.status, exc.code)
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        count_refusal(request.scope, 400, "invalid_request")
        # FastAPI says 422; OpenAI (and our clients) expect 400 for a bad request.
        first = exc.errors()[0] if exc.errors() else {}
        param = str(first.get("loc", ["", ""])[-1]) or None
        return error_response(400, f"Invalid parameter {param}: {first.get('msg', 'invalid value')}", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        count_refusal(request.scope, exc.status_code, None)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(StoreUnavailableError)
    async def _database(_: Request, exc: StoreUnavailableError) -> JSONResponse:
        # Disk full, database locked past the busy timeout, every connection stuck waiting for it, PostgreSQL
        # down: the write was rolled back, nothing accepted before is lost, and the client may retry.
        log.error("Database unavailable: %s", exc)
        return error_response(
            503,
            "The job database is temporarily unavailable; retry later",
            code="database_unavailable",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in _STORAGE_FULL:
            # The disk filled while an upload was spooled to a temporary file: the server's state, not a bug.
            log.error("Storage full: %s", exc)
            return error_response(
                503, "The server's storage is full; retry later", code="storage_full", headers={"Retry-After": "30"}
            )
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("Unexpected error")
        return error_response(500, "Internal server error", code="internal_error")


# No space left, quota exceeded, file size limit (RLIMIT_FSIZE).
_STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _allowed_methods(request: Request) -> str:
    """Every method of every route on the path: Starlette's 405 names only the first route's (``GET`` and
    ``DELETE`` of one job are two routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))
