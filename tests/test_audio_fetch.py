"""Tests for ``wazo_stt.audio.fetch``: downloading audio from a client-given URL.

A hand-written HTTP/1.1 server (``asyncio.start_server``) runs on 127.0.0.1 in a background thread, once over
plain HTTP and once over TLS with a self-signed certificate made by the ``openssl`` command at test time. Each
test drives ``fetch_audio`` with its own ``asyncio.run``. Nothing leaves the loopback interface: hosts that
would need DNS are served by a patched resolver.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
import traceback
import wave
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from wazo_stt.audio.fetch import UNREACHABLE_MESSAGE, FetchError, FetchPolicy, fetch_audio
from wazo_stt.netguard import RedactingFilter, blocked_reason, install_log_redaction, redact_text, redact_url

SECRET = "SECRET123"
MAX_BYTES = 200_000


def _make_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x01\x00" * 1600)  # 0.1 s
    return buffer.getvalue()


WAV = _make_wav()
HTML = b"\n  <!DOCTYPE html><html><body>Please log in</body></html>"


# --------------------------------------------------------------------------------------------- test server


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class LocalServer:
    """An HTTP/1.1 server on 127.0.0.1 running in its own thread and event loop."""

    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            options: dict[str, object] = (
                {"ssl": self.ssl_context, "ssl_handshake_timeout": 5} if self.ssl_context else {}
            )
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, **options)  # type: ignore[arg-type]
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(serve())
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fetch-test-server", daemon=True)
        self._thread.start()
        assert ready.wait(5), "test server did not start"

    def stop(self) -> None:
        assert self._loop is not None and self._thread is not None

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            asyncio.get_running_loop().stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async with asyncio.timeout(15):  # no handler outlives a test run, whatever the client does
                while await self._one_request(reader, writer):
                    pass
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection may carry another one."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        _method, target, _version = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        parts = urlsplit(target)
        request = Request(parts.path, parse_qs(parts.query), headers)
        self.requests.append(request)
        handler = ROUTES.get(parts.path, _not_found)
        return await handler(request, writer)


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


async def _send(
    writer: asyncio.StreamWriter,
    status: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bool:
    all_headers = {"Content-Length": str(len(body)), **(headers or {})}
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
    return True


async def _audio(request: Request, writer: asyncio.StreamWriter) -> bool:
    return await _send(writer, "200 OK", WAV, {"Content-Type": "audio/wav"})


async def _wrong_type(request: Request, writer: asyncio.StreamWriter) -> bool:
    return await _send(writer, "200 OK", WAV, {"Content-Type": "text/plain"})


async def _octet_stream_chunked(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(0, len(WAV), 1000):
        piece = WAV[i : i + 1000]
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


async def _html(request: Request, writer: asyncio.StreamWriter) -> bool:
    return await _send(writer, "200 OK", HTML, {"Content-Type": "text/html"})


async def _empty(request: Request, writer: asyncio.StreamWriter) -> bool:
    return await _send(writer, "200 OK", b"", {"Content-Type": "audio/wav"})


async def _slow(request: Request, writer: asyncio.StreamWriter) -> bool:
    """Headers at once, then one byte every 0.1 s forever: only an overall deadline stops this."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nConnection: close\r\n\r\n")
    while True:
        writer.write(b"\x00")
        await writer.drain()
        await asyncio.sleep(0.1)


async def _endless(request: Request, writer: asyncio.StreamWriter) -> bool:
    """A fast body without Content-Length that never ends."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nConnection: close\r\n\r\n")
    chunk = b"\x00" * 65536
    while True:
        writer.write(chunk)
        await writer.drain()


async def _huge_length(request: Request, writer: asyncio.StreamWriter) -> bool:
    """Announces 1 GB and sends only the start; the client must refuse from the header alone."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: 1000000000\r\n\r\n" + WAV)
    await writer.drain()
    await asyncio.sleep(10)
    return False


async def _loop(request: Request, writer: asyncio.StreamWriter) -> bool:
    return await _send(writer, "302 Found", headers={"Location": f"/loop?token={SECRET}"})


async def _redirect(request: Request, writer: asyncio.StreamWriter) -> bool:
    return await _send(writer, "302 Found", headers={"Location": f"/audio.wav?token={SECRET}"})


async def _redirect_to(request: Request, writer: asyncio.StreamWriter) -> bool:
    return await _send(writer, "307 Temporary Redirect", headers={"Location": request.query["to"][0]})


async def _redirect_metadata(request: Request, writer: asyncio.StreamWriter) -> bool:
    location = f"http://169.254.169.254/latest/meta-data/?token={SECRET}"
    return await _send(writer, "302 Found", headers={"Location": location})


def _status(code: int, phrase: str) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> bool:
        # A made-up reason phrase (the message must use the standard one) and a body echoing the token.
        return await _send(writer, f"{code} Nope", f"<p>{phrase}: bad token {SECRET}</p>".encode())

    return handler


async def _not_found(request: Request, writer: asyncio.StreamWriter) -> bool:
    return await _send(writer, "404 Not Found", b"no such path")


ROUTES: dict[str, Handler] = {
    "/audio.wav": _audio,
    "/wrong-type": _wrong_type,
    "/chunked": _octet_stream_chunked,
    "/html": _html,
    "/empty": _empty,
    "/slow": _slow,
    "/endless": _endless,
    "/huge-length": _huge_length,
    "/loop": _loop,
    "/redirect": _redirect,
    "/redirect-to": _redirect_to,
    "/redirect-metadata": _redirect_metadata,
    "/status/401": _status(401, "Unauthorized"),
    "/status/403": _status(403, "Forbidden"),
    "/status/404": _status(404, "Not Found"),
    "/status/500": _status(500, "Internal Server Error"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost, made by the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            *("req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=20,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tls_cert: tuple[Path, Path]) -> Iterator[LocalServer]:
    cert, key = tls_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    srv = LocalServer(ssl_context=context)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _log_redaction() -> None:
    """What the server does at start-up (wazo_stt.logs.setup_logging): importing the code installs nothing."""
    install_log_redaction()


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any HTTP request is sent at all."""

    async def send(*args: object, **kwargs: object) -> httpx.Response:
        raise AssertionError("fetch_audio opened a connection it should have refused beforehand")

    monkeypatch.setattr(httpx.AsyncClient, "send", send)


def _policy(**overrides: object) -> FetchPolicy:
    """Detailed errors on, so each failure's own message can be checked (the default is one message for all)."""
    values: dict[str, object] = {"max_bytes": MAX_BYTES, "timeout": 5.0, "detailed_errors": True} | overrides
    return FetchPolicy(**values)  # type: ignore[arg-type]


def _fetch(url: str, **overrides: object) -> bytes:
    return asyncio.run(fetch_audio(url, _policy(**overrides)))


def _fetch_error(url: str, **overrides: object) -> FetchError:
    with pytest.raises(FetchError) as info:
        _fetch(url, **overrides)
    return info.value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- good audio


def test_downloads_audio(server: LocalServer) -> None:
    assert _fetch(f"{server.base}/audio.wav?token={SECRET}") == WAV
    assert server.requests[-1].query["token"] == [SECRET]  # the token does reach the PBX


def test_content_type_is_not_judged(server: LocalServer) -> None:
    assert _fetch(f"{server.base}/wrong-type") == WAV
    assert _fetch(f"{server.base}/chunked") == WAV


def test_follows_a_relative_redirect(server: LocalServer) -> None:
    assert _fetch(f"{server.base}/redirect") == WAV
    assert server.requests[-1].path == "/audio.wav"


def test_follows_an_absolute_redirect(server: LocalServer) -> None:
    assert _fetch(f"{server.base}/redirect-to?to={server.base}/audio.wav") == WAV


def test_body_of_exactly_max_bytes_is_accepted(server: LocalServer) -> None:
    assert _fetch(f"{server.base}/audio.wav", max_bytes=len(WAV)) == WAV


def test_connects_to_the_checked_address_with_the_original_host_header(
    server: LocalServer, fake_dns: dict[str, list[str]]
) -> None:
    # httpx never resolves pbx.invalid itself: the pinned, checked address is what it connects to.
    fake_dns["pbx.invalid"] = ["127.0.0.1"]
    assert _fetch(f"http://pbx.invalid:{server.port}/audio.wav") == WAV
    assert server.requests[-1].headers["host"] == f"pbx.invalid:{server.port}"


def test_falls_back_to_the_next_address_when_one_refuses(server: LocalServer, fake_dns: dict[str, list[str]]) -> None:
    # 127.0.0.2 is loopback too but nothing listens there on this port.
    fake_dns["pbx.invalid"] = ["127.0.0.2", "127.0.0.1"]
    assert _fetch(f"http://pbx.invalid:{server.port}/audio.wav") == WAV


def test_real_resolver_on_localhost(server: LocalServer) -> None:
    assert _fetch(f"http://localhost:{server.port}/audio.wav") == WAV


# --------------------------------------------------------------------------------------------- failures


def test_slow_body_times_out(server: LocalServer) -> None:
    start = time.monotonic()
    error = _fetch_error(f"{server.base}/slow", timeout=1)
    assert time.monotonic() - start < 2.5
    assert (error.status_code, error.message) == (400, "Timed out after 1 s downloading the audio URL")


def test_endless_body_is_cut_at_max_bytes(server: LocalServer) -> None:
    error = _fetch_error(f"{server.base}/endless", max_bytes=100_000)
    assert error.status_code == 413
    assert error.message == "The audio at the URL is larger than the 0.1 MB limit"


def test_large_content_length_is_refused_without_reading(server: LocalServer) -> None:
    start = time.monotonic()
    error = _fetch_error(f"{server.base}/huge-length", max_bytes=100 * 1024 * 1024)
    assert time.monotonic() - start < 2  # the server never sends the rest: reading would hang until timeout
    assert (error.status_code, error.message) == (413, "The audio at the URL is larger than the 100 MB limit")


def test_redirect_loop(server: LocalServer) -> None:
    error = _fetch_error(f"{server.base}/loop")
    assert error.status_code == 400
    assert "too many redirects" in error.message
    assert sum(r.path == "/loop" for r in server.requests[-6:]) == 6  # first request + max_redirects=5


def test_max_redirects_zero_refuses_any_redirect(server: LocalServer) -> None:
    error = _fetch_error(f"{server.base}/redirect", max_redirects=0)
    assert "too many redirects" in error.message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (401, "The audio URL answered HTTP 401 Unauthorized; the token in the URL may be wrong or expired"),
        (403, "The audio URL answered HTTP 403 Forbidden; the token in the URL may be wrong or expired"),
        (404, "The audio URL answered HTTP 404 Not Found"),
        (500, "The audio URL answered HTTP 500 Internal Server Error"),
    ],
)
def test_http_error_status(server: LocalServer, code: int, expected: str) -> None:
    error = _fetch_error(f"{server.base}/status/{code}?token={SECRET}")
    assert (error.status_code, error.message) == (400, expected)


def test_html_page_is_refused(server: LocalServer) -> None:
    error = _fetch_error(f"{server.base}/html")
    assert (error.status_code, error.message) == (400, "The audio URL returned an HTML page, not audio")


def test_empty_body_is_refused(server: LocalServer) -> None:
    error = _fetch_error(f"{server.base}/empty")
    assert (error.status_code, error.message) == (400, "The audio URL returned no data")


def test_connection_refused() -> None:
    error = _fetch_error(f"http://127.0.0.1:{_free_port()}/audio.wav")
    assert (error.status_code, error.message) == (400, "Could not connect to the audio URL's host (connection refused)")


def test_unknown_host(fake_dns: dict[str, list[str]]) -> None:
    error = _fetch_error("http://nope.invalid/audio.wav")
    assert (error.status_code, error.message) == (400, "Could not resolve the audio URL's host (nope.invalid)")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://pbx/voicemail.wav", "url must be an http(s) URL"),
        ("file:///etc/passwd", "url must be an http(s) URL"),
        ("voicemail.wav", "url must be an http(s) URL"),
        ("http:///voicemail.wav", "url must include a host"),
        ("http://[::1/voicemail.wav", "url is not a valid URL"),
        ("http://pbx:99999/voicemail.wav", "url is not a valid URL"),
    ],
)
def test_malformed_urls(url: str, expected: str, no_connection: None) -> None:
    error = _fetch_error(url)
    assert (error.status_code, error.message) == (400, expected)


# --------------------------------------------------------------------------------------------- TLS


def test_tls_self_signed_is_refused_by_default(tls_server: LocalServer) -> None:
    error = _fetch_error(f"{tls_server.base}/audio.wav?token={SECRET}")
    assert error.status_code == 400
    assert error.message.startswith("TLS error")
    assert "URL_VERIFY_TLS" in error.message and "URL_CA_BUNDLE" in error.message


def test_tls_without_verification(tls_server: LocalServer) -> None:
    assert _fetch(f"{tls_server.base}/audio.wav", verify_tls=False) == WAV


def test_tls_with_ca_bundle(tls_server: LocalServer, tls_cert: tuple[Path, Path]) -> None:
    assert _fetch(f"{tls_server.base}/audio.wav", ca_bundle=tls_cert[0]) == WAV


def test_tls_certificate_is_checked_against_the_url_host_not_the_pinned_ip(
    tls_server: LocalServer, tls_cert: tuple[Path, Path], fake_dns: dict[str, list[str]]
) -> None:
    fake_dns["localhost"] = ["127.0.0.1"]
    fake_dns["pbx.invalid"] = ["127.0.0.1"]
    url = f"https://localhost:{tls_server.port}/audio.wav"
    assert _fetch(url, ca_bundle=tls_cert[0]) == WAV
    assert tls_server.requests[-1].headers["host"] == f"localhost:{tls_server.port}"
    # Same IP, but the certificate does not name pbx.invalid: verification must fail.
    error = _fetch_error(f"https://pbx.invalid:{tls_server.port}/audio.wav", ca_bundle=tls_cert[0])
    assert error.message.startswith("TLS error")


# --------------------------------------------------------------------------------------------- SSRF


def test_metadata_address_is_refused_before_connecting(no_connection: None) -> None:
    start = time.monotonic()
    error = _fetch_error("http://169.254.169.254/latest/meta-data/")
    assert time.monotonic() - start < 0.5
    assert error.status_code == 400
    assert error.message.startswith("The audio URL's host is not allowed (169.254.169.254")


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.0.1",
        "100.100.100.200",
        "0.0.0.0",
        "224.0.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "fd00:ec2::254",
        "ff02::1",
        "::",
        "::ffff:169.254.169.254",
        "::ffff:100.100.100.200",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    ],
)
def test_blocked_addresses(address: str) -> None:
    assert blocked_reason(address) is not None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.5", "192.168.1.10", "fd12:3456::1", "8.8.8.8", "::ffff:10.0.0.1"],
)
def test_lan_and_loopback_addresses_are_allowed(address: str) -> None:
    assert blocked_reason(address) is None


def test_host_resolving_to_any_blocked_address_is_refused(fake_dns: dict[str, list[str]], no_connection: None) -> None:
    fake_dns["sneaky.invalid"] = ["127.0.0.1", "169.254.169.254"]
    error = _fetch_error("http://sneaky.invalid/audio.wav")
    assert (
        error.message == "The audio URL's host is not allowed"
        " (sneaky.invalid points to a blocked link-local / cloud metadata address)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://2852039166/latest/meta-data/",  # 169.254.169.254 as one decimal number
        "http://0/",
        "http://100.100.100.200/latest/meta-data/",
    ],
)
def test_other_spellings_of_blocked_addresses_are_refused(url: str, no_connection: None) -> None:
    error = _fetch_error(url)
    assert error.message.startswith("The audio URL's host is not allowed")


def test_allowed_hosts_refuses_other_hosts(server: LocalServer, no_connection: None) -> None:
    error = _fetch_error(f"{server.base}/audio.wav", allowed_hosts=("pbx.example.com",))
    assert error.status_code == 400
    assert error.message == "The audio URL's host is not allowed (127.0.0.1 is not in URL_ALLOWED_HOSTS)"


def test_allowed_hosts_accepts_a_match(server: LocalServer, fake_dns: dict[str, list[str]]) -> None:
    assert _fetch(f"{server.base}/audio.wav", allowed_hosts=("127.0.0.1",)) == WAV
    fake_dns["pbx1.example.com"] = ["127.0.0.1"]
    assert _fetch(f"http://PBX1.Example.COM:{server.port}/audio.wav", allowed_hosts=("*.example.com",)) == WAV


def test_allowed_hosts_handles_trailing_dots_and_idn(server: LocalServer, fake_dns: dict[str, list[str]]) -> None:
    fake_dns["pbx.example.com"] = ["127.0.0.1"]
    fake_dns["xn--mnchen-3ya.de"] = ["127.0.0.1"]  # resolved (and matched) in its IDNA form
    assert _fetch(f"http://pbx.example.com.:{server.port}/audio.wav", allowed_hosts=("pbx.example.com",)) == WAV
    assert _fetch(f"http://münchen.de:{server.port}/audio.wav", allowed_hosts=("münchen.de",)) == WAV
    assert _fetch(f"http://münchen.de:{server.port}/audio.wav", allowed_hosts=("xn--mnchen-3ya.de",)) == WAV


def test_redirect_to_metadata_is_refused(server: LocalServer) -> None:
    error = _fetch_error(f"{server.base}/redirect-metadata", allowed_hosts=("127.0.0.1",))
    assert error.status_code == 400
    assert error.message.startswith("The audio URL's host is not allowed (169.254.169.254")


def test_redirect_to_a_host_outside_the_allow_list_is_refused(server: LocalServer) -> None:
    error = _fetch_error(
        f"{server.base}/redirect-to?to=http://localhost:{server.port}/audio.wav", allowed_hosts=("127.0.0.1",)
    )
    assert error.message == "The audio URL's host is not allowed (localhost is not in URL_ALLOWED_HOSTS)"


def test_redirect_to_a_non_http_scheme_is_refused(server: LocalServer) -> None:
    error = _fetch_error(f"{server.base}/redirect-to?to=file:///etc/passwd")
    assert error.message == "The audio URL redirected to a non-http(s) URL"


@pytest.mark.parametrize("location", ["http://127.0.0.1:99999/x", "http://[::1/x"])
def test_redirect_to_an_invalid_url_is_refused(server: LocalServer, location: str) -> None:
    error = _fetch_error(f"{server.base}/redirect-to?to={location}")
    assert (error.status_code, error.message) == (400, "The audio URL redirected to an invalid URL")


# --------------------------------------------------------------------------------------------- no token leak


@pytest.fixture
def leak_cases(
    server: LocalServer, tls_server: LocalServer, fake_dns: dict[str, list[str]]
) -> dict[str, tuple[str, dict[str, object]]]:
    fake_dns["sneaky.invalid"] = ["169.254.169.254"]
    token = f"token={SECRET}"
    return {
        "refused": (f"http://127.0.0.1:{_free_port()}/a.wav?{token}", {}),
        "dns": (f"http://nope.invalid/a.wav?{token}", {}),
        "timeout": (f"{server.base}/slow?{token}", {"timeout": 1}),
        "endless": (f"{server.base}/endless?{token}", {}),
        "content-length": (f"{server.base}/huge-length?{token}", {}),
        "loop": (f"{server.base}/loop?{token}", {}),
        "401": (f"{server.base}/status/401?{token}", {}),
        "403": (f"{server.base}/status/403?{token}", {}),
        "404": (f"{server.base}/status/404?{token}", {}),
        "500": (f"{server.base}/status/500?{token}", {}),
        "html": (f"{server.base}/html?{token}", {}),
        "empty": (f"{server.base}/empty?{token}", {}),
        "tls": (f"{tls_server.base}/audio.wav?{token}", {}),
        "metadata": (f"http://169.254.169.254/latest/meta-data/?{token}", {}),
        "resolves-to-metadata": (f"http://sneaky.invalid/?{token}", {}),
        "allow-list": (f"{server.base}/audio.wav?{token}", {"allowed_hosts": ("pbx.example.com",)}),
        "redirect-to-metadata": (f"{server.base}/redirect-metadata?{token}", {}),
        "scheme": (f"ftp://pbx/a.wav?{token}", {}),
        "malformed": (f"http://[::1/a.wav?{token}", {}),
        "bad-port": (f"http://pbx:99999/a.wav?{token}", {}),
        "password": (f"http://admin:{SECRET}@127.0.0.1:{_free_port()}/a.wav", {}),
    }


LEAK_CASE_NAMES = [
    "refused",
    "dns",
    "timeout",
    "endless",
    "content-length",
    "loop",
    "401",
    "403",
    "404",
    "500",
    "html",
    "empty",
    "tls",
    "metadata",
    "resolves-to-metadata",
    "allow-list",
    "redirect-to-metadata",
    "scheme",
    "malformed",
    "bad-port",
    "password",
]


@pytest.mark.parametrize("case", LEAK_CASE_NAMES)
def test_token_never_leaks_on_errors(
    case: str, leak_cases: dict[str, tuple[str, dict[str, object]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, overrides = leak_cases[case]
    caplog.set_level(logging.DEBUG)
    error = _fetch_error(url, **overrides)
    assert SECRET not in error.message
    assert SECRET not in str(error) and SECRET not in repr(error)
    assert SECRET not in "".join(traceback.format_exception(error))
    assert SECRET not in caplog.text
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_leak_cases_are_all_tested(leak_cases: dict[str, tuple[str, dict[str, object]]]) -> None:
    assert sorted(leak_cases) == sorted(LEAK_CASE_NAMES)


def test_httpx_logs_are_redacted_not_silenced(server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert _fetch(f"{server.base}/redirect?token={SECRET}&user=42") == WAV
    assert SECRET not in caplog.text
    httpx_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("HTTP Request: GET" in m and "token=REDACTED&user=REDACTED" in m for m in httpx_lines)
    # httpcore logs the redirect's Location header (which carries the token) at DEBUG.
    assert any(r.name.startswith("httpcore") and "token=REDACTED" in r.getMessage() for r in caplog.records)


def test_log_filter_is_installed_once() -> None:
    install_log_redaction()
    install_log_redaction()
    for name in ("httpx", "httpcore.http11", "httpcore.connection"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactingFilter) for f in filters) == 1


# --------------------------------------------------------------------------------------------- redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://pbx/voicemail/1.wav?token=abc", "https://pbx/voicemail/1.wav?token=REDACTED"),
        ("https://pbx/v.wav?token=abc&format=wav", "https://pbx/v.wav?token=REDACTED&format=REDACTED"),
        ("https://pbx/v.wav?token=", "https://pbx/v.wav?token=REDACTED"),
        ("https://pbx/v.wav?abcdef", "https://pbx/v.wav?REDACTED"),
        ("https://pbx/v.wav#frag", "https://pbx/v.wav"),
        ("https://pbx/v.wav?token=abc#frag", "https://pbx/v.wav?token=REDACTED"),
        ("https://user:pw@pbx:8443/v.wav", "https://REDACTED@pbx:8443/v.wav"),
        ("https://TOKEN@pbx/v.wav", "https://REDACTED@pbx/v.wav"),
        ("https://pbx/vm/1.wav;token=abc", "https://pbx/vm/1.wav;token=REDACTED"),
        ("https://pbx/vm;sid=abc/1.wav;abcdef?x=1", "https://pbx/vm;sid=REDACTED/1.wav;REDACTED?x=REDACTED"),
        ("https://pbx/v.wav", "https://pbx/v.wav"),
        ("http://[::1]:8080/a?t=1", "http://[::1]:8080/a?t=REDACTED"),
        ("http://[::1/a?token=abc#x", "http://[::1/a?REDACTED"),
        ("http://u:pw@[::1/a;token=abc?t=1", "http://REDACTED@[::1/a;token=REDACTED?REDACTED"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_handles_relative_urls_and_passwords() -> None:
    text = "(b'Location', b'/x;sid=abc?token=abc&n=1') GET http://u:pw@h/y?k=v"
    assert redact_text(text) == (
        "(b'Location', b'/x;sid=REDACTED?token=REDACTED&n=REDACTED') GET http://REDACTED@h/y?k=REDACTED"
    )


# --------------------------------------------------------------------------------------------- one error for all


@pytest.mark.parametrize(
    "case", ["refused", "dns", "timeout", "loop", "401", "404", "500", "html", "empty", "tls"]
)
def test_unreachable_hosts_all_get_the_same_error_by_default(
    case: str, leak_cases: dict[str, tuple[str, dict[str, object]]], caplog: pytest.LogCaptureFixture
) -> None:
    """Refused, timed out, TLS, HTTP error...: the client cannot tell them apart (no port scanner), the log can."""
    url, overrides = leak_cases[case]
    caplog.set_level(logging.INFO, logger="wazo_stt.audio.fetch")
    error = _fetch_error(url, detailed_errors=False, **overrides)
    assert (error.status_code, error.message) == (400, UNREACHABLE_MESSAGE)
    detailed = _fetch_error(url, **overrides).message
    assert detailed != UNREACHABLE_MESSAGE
    assert any(detailed in r.getMessage() for r in caplog.records if r.name == "wazo_stt.audio.fetch")
    assert SECRET not in caplog.text


def test_policy_refusals_stay_specific_without_detailed_errors(no_connection: None) -> None:
    """A refused host is a decision about the URL itself, not a probe of the network: it keeps its message."""
    error = _fetch_error("http://169.254.169.254/latest/meta-data/", detailed_errors=False)
    assert error.message.startswith("The audio URL's host is not allowed")


# --------------------------------------------------------------------------------------------- policy


def test_policy_from_settings(tmp_path: Path) -> None:
    from wazo_stt.config import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        max_upload_mb=2,
        url_fetch_timeout_secs=7,
        url_verify_tls=False,
        url_ca_bundle=tmp_path / "ca.pem",
        url_allowed_hosts=" PBX.example.com, *.lan ",
    )
    assert FetchPolicy.from_settings(settings) == FetchPolicy(
        max_bytes=2 * 1024 * 1024,
        timeout=7,
        verify_tls=False,
        ca_bundle=tmp_path / "ca.pem",
        allowed_hosts=("pbx.example.com", "*.lan"),
        max_redirects=5,
        detailed_errors=False,
    )
