"""The page at ``/`` to try the server, and ``/docs`` (Swagger UI) with its assets served locally.

Both work offline: the page is plain HTML/JS/CSS shipped in this package (``static/``, package data), and Swagger
UI's JavaScript and CSS come from the installed ``fastapi-offline`` package instead of FastAPI's default CDN.
They only call the public HTTP API, so they need nothing from the rest of the application.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(str(files("wazo_stt.web") / "static"))


def swagger_ui_dir() -> Path:
    """Swagger UI 5 as fastapi-offline ships it (``static/``); only these files are used, not its FastAPI class."""
    return Path(str(files("fastapi_offline") / "static"))


def install_web(app: FastAPI) -> None:
    """Mount the page at ``/`` (assets under ``/web``) and Swagger UI at ``/docs`` (assets under ``/docs-assets``).

    The app must be created with ``docs_url=None`` so that this ``/docs`` replaces FastAPI's CDN-based one.
    """
    app.mount("/web", StaticFiles(directory=STATIC_DIR), name="web")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_dir()), name="docs-assets")

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    # Plain routes, as FastAPI adds its own /docs and /openapi.json: the app's dependencies (the API-key check)
    # do not apply. They hold no data; the page asks for the key when an API call answers 401.
    app.add_route("/", page, include_in_schema=False)
    app.add_route("/docs", docs, include_in_schema=False)
