"""The real server as users run it: ``wazo-stt serve`` in its own process, spoken to over loopback HTTP.

A separate process (not uvicorn in a thread of the benchmark) keeps the benchmark's own Python work off the
server's GIL and makes the server's memory its own, read from ``/proc/PID/status`` (VmRSS now, VmHWM peak).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import log

READY_TIMEOUT_S = 300.0


@dataclass
class JobTiming:
    """One submission as a client sees it."""

    job_id: str
    submitted: float  # perf_counter() before the POST
    accepted: float  # POST answered
    completed: float  # first poll (or the synchronous response) that saw the job finished
    status: str
    duration: float | None


@dataclass
class ServerProcess:
    """A running ``wazo-stt serve`` with a fresh database; use :func:`serve` to start one."""

    process: subprocess.Popen[bytes]
    base_url: str
    env: dict[str, str]
    client: httpx.Client
    log_path: Path
    rss_samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory(self) -> dict[str, int]:
        """Bytes: ``rss`` now and ``hwm``, the peak since start or since :meth:`reset_peak`."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values["rss" if key == "VmRSS" else "hwm"] = int(rest.split()[0]) * 1024
        return values

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far (every thread)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def reset_peak(self) -> bool:
        """Restart the kernel's peak-RSS counter, so a peak belongs to one phase (not to model loading)."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    @contextlib.contextmanager
    def sample_rss(self, every: float = 0.25) -> Iterator[list[tuple[float, int]]]:
        """Sample VmRSS in the background: a curve for the record, and a peak that works without clear_refs."""
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        start = time.perf_counter()

        def loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError, KeyError):
                    samples.append((round(time.perf_counter() - start, 2), self.memory()["rss"]))
                stop.wait(every)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield samples
        finally:
            stop.set()
            thread.join()

    # --- the API as a telephony client uses it -----------------------------------------------------------

    def submit(
        self, path: Path, *, identity: bool = True, response_format: str = "json"
    ) -> tuple[httpx.Response, float]:
        """POST a file; asynchronous (with ``user_uuid``/``message_id``) unless ``identity`` is False."""
        data = {"response_format": response_format}
        if identity:
            data |= {"user_uuid": "bench", "message_id": uuid.uuid4().hex}
        with path.open("rb") as f:
            start = time.perf_counter()
            response = self.client.post(
                "/v1/audio/transcriptions", data=data, files={"file": (path.name, f)}, timeout=None
            )
        response.raise_for_status()
        return response, start

    def transcribe(self, path: Path, *, poll_every: float = 0.02) -> JobTiming:
        """Submit asynchronously, then poll the job until it is finished (the telephony client's workflow)."""
        response, start = self.submit(path)
        accepted = time.perf_counter()
        job_id = response.json()["job_id"]
        while True:
            body = self.client.get(f"/v1/audio/transcriptions/{job_id}").json()
            if body["status"] in ("completed", "failed"):
                return JobTiming(job_id, start, accepted, time.perf_counter(), body["status"], body.get("duration"))
            time.sleep(poll_every)

    def transcribe_sync(self, path: Path) -> JobTiming:
        """The OpenAI client's workflow: one POST that answers with the transcript."""
        response, start = self.submit(path, identity=False)
        done = time.perf_counter()
        job_id = response.headers.get("x-job-id", "")
        return JobTiming(job_id, start, done, done, "completed", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(
    model: Path,
    extra_env: dict[str, str] | None = None,
    *,
    warm_up: Path | None = None,
    module: str = "wazo_stt",
) -> Iterator[ServerProcess]:
    """Start ``wazo-stt serve`` on a loopback port, wait until the model is loaded, stop it afterwards.

    ``warm_up``: a file transcribed once before yielding, so the first measured request does not pay for
    ONNX Runtime's first-run allocations (a running server has long paid them). ``module``: what
    ``python -m`` runs with the ``serve`` argument (a variant of the server, for a baseline).
    """
    with tempfile.TemporaryDirectory(prefix="wazo-stt-bench-") as tmp:
        port = free_port()
        env = {
            "MODEL_PATH": str(model),
            "DB_PATH": str(Path(tmp) / "bench.db"),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": "warning",
            "MAX_QUEUE_SIZE": "500",
            **(extra_env or {}),
        }
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log_file:
            # cwd in the temporary directory: a developer's .env in the repository must not change the numbers.
            process = subprocess.Popen(
                [sys.executable, "-m", module, "serve"],
                cwd=tmp,
                env={**os.environ, **env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        server = ServerProcess(process, f"http://127.0.0.1:{port}", env, client, log_path)
        try:
            _wait_ready(server)
            if warm_up is not None:
                server.transcribe(warm_up)
            yield server
        finally:
            client.close()
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(server: ServerProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    start = time.monotonic()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited ({server.process.returncode}):\n{_tail(server.log_path)}")
        with contextlib.suppress(httpx.TransportError):
            response = server.client.get("/health")
            if response.status_code == 200:
                log(f"server pid {server.pid} ready in {time.monotonic() - start:.1f} s")
                return
            body: dict[str, Any] = response.json()
            if body.get("status") == "unavailable":
                raise RuntimeError(f"the server could not load the model: {body}")
        time.sleep(0.1)
    raise TimeoutError(f"the server was not ready after {READY_TIMEOUT_S:.0f} s:\n{_tail(server.log_path)}")


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
