"""The roles, through the real command line: ``wazo-stt serve --workers 0`` (API only) and ``wazo-stt worker``
(workers, /health only) sharing one SQLite database; a job submitted to the first is transcribed by the second."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.jobs import TEXT, TRANSCRIPTIONS, submit, wait_until
from tests.support.processes import free_port, server_env

WAZO_STT = str(Path(sys.executable).with_name("wazo-stt"))


@contextlib.contextmanager
def command(args: list[str], env: dict[str, str], log: Path):
    with log.open("wb") as out:
        process = subprocess.Popen([WAZO_STT, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def _up(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    return False


@pytest.mark.slow
def test_an_api_only_server_and_a_worker_node_share_the_queue(tmp_path, tiny_model_dir):
    import os

    env = {**os.environ, **server_env(tiny_model_dir, tmp_path / "jobs.db"), "HOST": "127.0.0.1"}
    api_port, worker_port = free_port(), free_port()
    api_url, worker_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{worker_port}"
    with (
        command(["serve", "--workers", "0", "--port", str(api_port)], env, tmp_path / "api.log"),
        command(["worker", "--port", str(worker_port)], env, tmp_path / "worker.log"),
    ):
        wait_until(lambda: _up(api_url) and _up(worker_url), timeout=60, what="both up")
        with httpx.Client(base_url=api_url, timeout=30) as api:
            job = submit(api, "m")
            wait_until(lambda: api.get(f"{TRANSCRIPTIONS}/{job}").json()["status"] == "completed", timeout=30)
            assert api.get(f"{TRANSCRIPTIONS}/{job}").json()["text"] == TEXT
            # A synchronous request on the API-only server learns of the worker's result (polling on SQLite).
            sync = api.post(TRANSCRIPTIONS, files={"file": ("a.wav", _wav())})
            assert sync.status_code == 200 and sync.json()["text"] == TEXT
        assert httpx.get(f"{worker_url}{TRANSCRIPTIONS}/{job}").status_code == 404  # a worker serves no API
    assert "completed" in (tmp_path / "worker.log").read_text()
    assert "completed" not in (tmp_path / "api.log").read_text()


def test_a_worker_needs_at_least_one_worker(tmp_path):
    import os

    result = subprocess.run(
        [WAZO_STT, "worker", "--workers", "0"],
        env={**os.environ, "DB_PATH": str(tmp_path / "x.db")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        result.returncode == 2 and result.stderr.strip() == "error: a worker needs WORKERS (or --workers) of 1 or more"
    )


def _wav() -> bytes:
    from tests.support.jobs import voicemail

    return voicemail(2.5)
