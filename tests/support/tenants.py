"""A real server with API keys for two tenants and an operator (``API_KEYS=k1:t1,k2:t2,k3:ops:admin``), and
clients that call it as each of them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import openai

from tests.support.server import running_server, wait_ready

KEY_T1 = "sk-tenant-one-4f1c2a"
KEY_T2 = "sk-tenant-two-9b7e30"
KEY_ADMIN = "sk-operator-admin-51d0"
API_KEYS = f"{KEY_T1}:t1,{KEY_T2}:t2,{KEY_ADMIN}:ops:admin"


@contextlib.contextmanager
def keyed_server(settings, engine_loader=None, **update) -> Iterator[str]:
    """The server with the three keys (and ``update`` applied to its settings), ready; yields its URL."""
    settings = settings.model_copy(update={"api_keys": API_KEYS, **update})
    with running_server(settings, *([engine_loader] if engine_loader else [])) as url:
        with httpx.Client(base_url=url) as client:
            wait_ready(client)
        yield url


def as_key(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)
