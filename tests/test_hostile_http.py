"""HTTP attacks from issue 14, each bounded and on loopback: huge headers, slowloris, too many connections.

The server is the real one (``wazo-stt serve``'s code) in a process of its own, with short timeouts so that
each test takes seconds. Before the fix (uvicorn + httptools, defaults) a 1 MB header was served, a half-sent
request stayed open forever, and connections were limited only by the file-descriptor limit.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fuzz import send_raw, status_of
from tests.support.processes import ServerProcess, server_env, server_process

TIMEOUT = 1.0  # HTTP_HEADER_TIMEOUT_SECS and HTTP_BODY_IDLE_TIMEOUT_SECS of the test server
MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("hostile-http")
    env = server_env(
        tiny_model_dir,
        tmp / "jobs.db",
        http_header_timeout_secs=TIMEOUT,
        http_body_idle_timeout_secs=TIMEOUT,
        http_max_connections=MAX_CONNECTIONS,
        http_max_header_kb=64,
    )
    with server_process(env, tmp / "server.log") as process:
        process.start()
        yield process


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `seconds`, reading whatever it says first."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@contextlib.contextmanager
def connection(server: ServerProcess) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        yield sock


def test_a_huge_header_is_refused_without_reading_it_all(server: ServerProcess) -> None:
    header = b"X-Junk: " + b"a" * (1024 * 1024) + b"\r\n"
    response = send_raw("127.0.0.1", server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
    assert status_of(response) == 400
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def test_headers_under_the_limit_are_served(server: ServerProcess) -> None:
    header = b"X-Cookie: " + b"a" * (32 * 1024) + b"\r\n"
    response = send_raw(
        "127.0.0.1", server.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + b"\r\n"
    )
    assert status_of(response) == 200


def test_a_half_sent_request_head_is_closed_after_the_header_timeout(server: ServerProcess) -> None:
    with connection(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        # Slowloris: a header line now and then, each well within the timeout; the deadline is for the head.
        for _ in range(3):
            time.sleep(TIMEOUT / 2)
            with contextlib.suppress(OSError):
                sock.sendall(b"X-A: b\r\n")
        assert closed_within(sock, 5 * TIMEOUT)
        assert time.monotonic() - started < 6 * TIMEOUT


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    with connection(server) as sock:
        assert closed_within(sock, 5 * TIMEOUT)


def test_a_body_that_stops_arriving_is_dropped(server: ServerProcess) -> None:
    with connection(server) as sock:
        sock.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n"
        )
        assert closed_within(sock, 5 * TIMEOUT)


def test_a_slow_but_steady_keep_alive_client_is_served(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(TIMEOUT / 2)


def test_connections_past_the_cap_get_503_not_a_dead_server(server: ServerProcess) -> None:
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(connection(server)) for _ in range(MAX_CONNECTIONS)]
        time.sleep(0.2)
        response = send_raw("127.0.0.1", server.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(response) == 503
        del idle
    # Those connections closed (by us, or by the header timeout): service is back.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/health", timeout=5).status_code == 200:
            break
        time.sleep(0.1)
    else:
        pytest.fail("/health did not come back after the connections closed")


def test_the_file_descriptor_soft_limit_is_raised_to_the_hard_one() -> None:
    """Started with a soft limit of 256 (where the hard one allows more), the server can hold more."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard file-descriptor limit here is only {hard}")
    script = (
        "from wazo_stt.api.http_limits import raise_fd_limit; import resource; raise_fd_limit(); "
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [int(v) for v in out] == [hard, hard]
