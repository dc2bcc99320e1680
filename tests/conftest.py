"""Shared fixtures: the tiny deterministic Parakeet model, settings pointing at it, a live server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import wazo_stt.netguard.guard as guard_module
from tests.support import postgres
from tests.support.clock import FakeClock
from tests.support.server import running_server, wait_ready
from tests.support.tiny_parakeet import build_tiny_parakeet
from wazo_stt.config import Settings
from wazo_stt.jobs.store import JobStore


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_parakeet(tmp_path_factory.mktemp("tiny-parakeet"))


def tiny_settings(data_dir: Path, model_dir: Path) -> Settings:
    """Settings of a test server on the tiny model, its database under ``data_dir``."""
    return Settings(
        _env_file=None,
        model_path=model_dir,
        db_path=data_dir / "transcriptions.db",
        max_upload_mb=5,
        max_audio_duration_secs=600,
        # The tiny model hears tone bursts, which Silero rightly calls non-speech: these tests cut fixed chunks.
        # The VAD path is tested with espeak-ng speech (tests/test_vad_*.py).
        enable_vad=False,
        # These tests follow jobs through a queue (positions, a full queue, the job running when a server is
        # killed): one at a time, as they were written. Two at once (WORKERS=auto) is tests/test_concurrency.py's.
        workers=1,
    )


@pytest.fixture
def settings(tmp_path, tiny_model_dir) -> Settings:
    return tiny_settings(tmp_path / "data", tiny_model_dir)


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory, tiny_model_dir) -> Iterator[httpx.Client]:
    """One server for a whole module, for tests that leave nothing behind that another test could see."""
    settings = tiny_settings(tmp_path_factory.mktemp("shared"), tiny_model_dir)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(client)
        yield client


@pytest.fixture
def server_url(settings) -> Iterator[str]:
    with running_server(settings) as url:
        with httpx.Client(base_url=url) as client:
            wait_ready(client)
        yield url


@pytest.fixture
def client(server_url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=60) as c:
        yield c


@pytest.fixture
def clock() -> FakeClock:
    """The store's clock, moved by hand (timestamps, retention)."""
    return FakeClock()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own on the real PostgreSQL server (dropped at the end), or a skip."""
    reason = postgres.unreachable_reason()
    if reason:
        pytest.skip(reason)
    with postgres.fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Each store test runs on both dialects: a fresh SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'jobs.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def store(database_url, clock) -> AsyncIterator[JobStore]:
    """A real job store (SQLite, then PostgreSQL) with a queue of 5, on the fake clock, a 30 s lease."""
    s = await JobStore.open(database_url=database_url, max_queue_size=5, clock=clock, lease_seconds=30)
    if s.dialect == "postgresql":
        await postgres.empty_tables(database_url)
    yield s
    await s.close()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host names → addresses for the network guard's resolver; a name missing from it fails like an unknown host
    (tests of the guard and of URL fetches decide on addresses without any DNS or outbound packet)."""
    table: dict[str, list[str]] = {}

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    monkeypatch.setattr(guard_module, "resolve", resolve)
    return table
