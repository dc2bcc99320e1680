"""Shared fixtures: the tiny deterministic Parakeet model, settings pointing at it, a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import running_server, wait_ready
from tests.support.tiny_parakeet import build_tiny_parakeet
from wazo_stt.config import Settings


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_parakeet(tmp_path_factory.mktemp("tiny-parakeet"))


@pytest.fixture
def settings(tmp_path, tiny_model_dir) -> Settings:
    return Settings(
        _env_file=None,
        model_path=tiny_model_dir,
        db_path=tmp_path / "data" / "transcriptions.db",
        max_upload_mb=5,
        max_audio_duration_secs=600,
        # The tiny model hears tone bursts, which Silero rightly calls non-speech: these tests cut fixed chunks.
        # The VAD path is tested with espeak-ng speech (tests/test_vad_*.py).
        enable_vad=False,
    )


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
