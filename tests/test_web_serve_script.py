"""``bash scripts/serve.sh`` from a fresh copy of the repository, on a machine that cannot reach the model hub.

It must end with a server that transcribes real speech: the download fails (a local fake hub answering 503), the
script says so in one paragraph and the server serves the embedded Whisper tiny.en. The same install is then run
with the README's other settings: ``ENABLE_PARAKEET=false`` (no download attempted at all) and ``MODEL_PATH``
holding the files already (Parakeet served, unverified but used). Slow: the first run installs everything into a
new virtual environment, as a new user's would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audio_fixtures import wav_bytes
from tests.support.fake_hub import fake_hub
from tests.support.processes import free_port
from tests.support.speech import spoken

ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 540  # a fresh venv with every runtime dependency and the whisper extra, on a slow mirror


def _fresh_copy(target: Path) -> Path:
    """What `git clone` would give, with the working tree's current content (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@contextlib.contextmanager
def _serve_script(clone: Path, env: dict[str, str], log: Path, timeout: float) -> Iterator[str]:
    port = free_port()
    environment = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port)}
    environment.pop("VIRTUAL_ENV", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "scripts/serve.sh"], cwd=clone, env=environment, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                assert process.poll() is None, f"serve.sh exited with {process.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"not healthy in {timeout} s:\n{log.read_text()}"
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health").status_code == 200:
                        break
                time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 240)
def test_serve_script_always_ends_with_a_transcribing_server(tmp_path, tiny_model_dir):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    clone = _fresh_copy(tmp_path / "wazo-stt")
    speech = wav_bytes(spoken("Please call me back tomorrow morning."), 16000)
    with fake_hub({}) as hub:
        hub.status = 503  # the hub refuses: as good as unreachable
        base = {"HF_ENDPOINT": hub.url, "HF_HUB_ETAG_TIMEOUT": "5", "LOG_LEVEL": "info"}

        # 1. Nothing but the README's first command.
        log = tmp_path / "first.log"
        with _serve_script(clone, base, log, INSTALL_TIMEOUT) as url, httpx.Client(base_url=url, timeout=60) as c:
            health = c.get("/health").json()
            assert health["model"] == "whisper-tiny.en" and "ENGLISH ONLY" in health["fallback"]
            text = c.post("/v1/audio/transcriptions", files={"file": ("s.wav", speech)},
                          data={"response_format": "text"}).text
            assert "tomorrow" in text.lower()
            assert c.get("/").status_code == 200
        output = log.read_text()
        assert "NOTE: Parakeet could not be fetched" in output and "ENGLISH ONLY" in output
        assert (clone / "data" / "transcriptions.db").is_file()
        assert not (clone / "models" / "parakeet").exists()  # no empty .cache left by the failed download

        # 2. ENABLE_PARAKEET=false: a Whisper-only server, and not a single request to the hub.
        hub.requests.clear()
        with _serve_script(clone, {**base, "ENABLE_PARAKEET": "false"}, tmp_path / "second.log", 240) as url:
            assert httpx.get(f"{url}/health").json()["model"] == "whisper-tiny.en"
        assert hub.requests == []

        # 3. MODEL_PATH with the files already there (copied by hand): Parakeet is served, DEFAULT_MODEL honoured.
        env = {**base, "MODEL_PATH": str(tiny_model_dir), "DEFAULT_MODEL": "parakeet"}
        with _serve_script(clone, env, tmp_path / "third.log", 240) as url:
            health = httpx.get(f"{url}/health").json()
            assert health["model"] == "parakeet-tdt-0.6b-v3" and "fallback" not in health
