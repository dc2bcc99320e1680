"""Run the real app under uvicorn on a loopback port, in a thread, for tests that speak real HTTP."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from wazo_stt.api import create_app
from wazo_stt.api.app import EngineLoader
from wazo_stt.api.http_limits import uvicorn_limits
from wazo_stt.config import Settings
from wazo_stt.engine.loader import load_engines


@contextlib.contextmanager
def running_server(settings: Settings, engine_loader: EngineLoader = load_engines) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) of a server that is up and has finished start-up."""
    config = uvicorn.Config(
        create_app(settings, engine_loader),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        **uvicorn_limits(settings),  # the HTTP implementation and limits of `wazo-stt serve`
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_ready(client, timeout: float = 30.0) -> None:
    """Wait until /health says the model is loaded (it loads in the background after start-up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/health")
        if response.status_code == 200:
            return
        if response.json().get("status") == "unavailable":
            raise RuntimeError(response.text)
        time.sleep(0.05)
    raise TimeoutError("model did not load")
