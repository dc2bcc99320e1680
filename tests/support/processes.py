"""Start, kill and restart the real server as a process of its own (``tests/support/server_main.py``).

Why a process and not a thread: a crash is ``kill -9`` of the process, and a graceful stop is SIGTERM with
uvicorn's own signal handling, exit status included; neither can be had from a server running in a thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """One server process on a fixed port and database; ``start`` again after it died to restart it."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0, *, ready: bool = True, **env: str) -> None:
        """Start it (again) and, with ``ready``, wait until its model is loaded; ``env`` overrides variables
        for this run."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            log.write(f"--- start {env}\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.server_main"],
                cwd=ROOT,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not ready:
            return
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health").status_code == 200:
                        return
                time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """kill -9: no handler runs, nothing is flushed but what SQLite already committed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def server_process(env: Mapping[str, str], log_path: Path) -> Iterator[ServerProcess]:
    """A ServerProcess that is killed at the end of the block whatever happened."""
    server = ServerProcess(env, log_path)
    try:
        yield server
    finally:
        server.kill()


def server_env(model_dir: Path, db_path: Path, **extra: str | float | int) -> dict[str, str]:
    """The environment of a test server: the tiny model, a database of the test's own, small limits."""
    env = {
        "MODEL_PATH": str(model_dir),
        "DB_PATH": str(db_path),
        "MAX_UPLOAD_MB": "5",
        "MAX_AUDIO_DURATION_SECS": "600",
        "LOG_LEVEL": "info",
        "ENABLE_VAD": "false",  # the tiny model hears tone bursts, which Silero rightly calls non-speech
        # A killed worker's job is taken back when its lease expires: short, so the tests need not wait long.
        "LEASE_SECS": "2",
        "WORKERS": "1",  # one job at a time unless a test asks for more (see tests/conftest.py's tiny_settings)
    }
    env.update({key.upper(): str(value) for key, value in extra.items()})
    return env


def db_rows(db_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the server's database directly, as an operator would (read-only, never blocking the server)."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(sql, params).fetchall()
