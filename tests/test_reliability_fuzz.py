"""Hostile input: the decoder and the multipart endpoint, fuzzed with hypothesis, plus the corpus of inputs
that once broke them.

The goals, checked on every case: no 5xx, no hang (every request answered within a timeout), errors in OpenAI's
shape; and after the run: the server healthy, no job left queued or processing. The fast run tries a few hundred
cases; the slow one (``-m slow``, still in CI) over a thousand. A case that fails becomes a file in
``tests/corpus/`` (see ``tests/corpus/README.md``), replayed by the tests at the end of this file forever after.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.audio_fixtures import tone_with_click, wav_bytes
from tests.support.fuzz import RawRequest, damaged_audio, multipart_requests, send_raw, status_of
from tests.support.server import running_server, wait_ready
from wazo_stt.audio import AudioError, decode_audio
from wazo_stt.config import Settings

TRANSCRIPTIONS = "/v1/audio/transcriptions"
CORPUS = Path(__file__).parent / "corpus"
REQUEST_TIMEOUT = 20.0  # an answer slower than this is a hang
REQUEST_BUDGET = 4.0  # no request of these (small bodies, audio of a second or two) may take longer
DECODE_BUDGET = 3.0  # seconds for any damaged 1-second file (the 740 MHz WAV took 5)
FUZZ = dict(
    deadline=None,
    database=None,  # nothing written to the working tree; failures are kept in tests/corpus/ by hand
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, tiny_model_dir) -> Iterator[httpx.Client]:
    """One server for all the cases: state left by one case (a job, a half-read body) must not hurt the next."""
    config = Settings(
        _env_file=None,
        model_path=tiny_model_dir,
        db_path=tmp_path_factory.mktemp("fuzz") / "jobs.db",
        max_upload_mb=2,
        max_audio_duration_secs=120,
        max_queue_size=10_000,
        url_fetch_timeout_secs=2,
        sync_timeout_secs=REQUEST_TIMEOUT,
        enable_vad=False,
    )
    with running_server(config) as url, httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        wait_ready(client)
        yield client
        assert_healthy_and_nothing_stuck(client)


def assert_healthy_and_nothing_stuck(client: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while (health := client.get("/health").json())["db_stats"]["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health["status"] == "healthy"
    assert health["db_stats"]["pending"] == 0, health  # every accepted job finished: none stuck
    assert health["db_stats"]["failed"] == 0, health  # what passed validation at submission also transcribed


def check_response(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    assert response.elapsed.total_seconds() < REQUEST_BUDGET, f"took {response.elapsed}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


def post_raw(client: httpx.Client, request: RawRequest) -> httpx.Response:
    return client.post(TRANSCRIPTIONS, content=request.body, headers=request.headers())


# --- the decoder, in-process ---------------------------------------------------------------------------------


def decode_checked(data: bytes) -> None:
    started = time.monotonic()
    try:
        decode_audio(data, max_duration=120)
    except AudioError as exc:
        assert exc.reason in {"undecodable", "empty", "silent", "too_long"} and exc.message
    assert time.monotonic() - started < DECODE_BUDGET


@pytest.mark.parametrize(("rate", "refused"), [(8_000, False), (768_000, False), (768_001, True), (739_989_824, True)])
def test_implausible_sample_rates_are_refused_at_once(rate: int, refused: bool) -> None:
    """What the fuzzer found: a header's sample rate sizes the resampler's filter (see tests/corpus/README.md)."""
    data = bytearray(wav_bytes(tone_with_click(8000, duration=1.0), 8000))
    struct.pack_into("<II", data, 24, rate, 2 * rate)  # the fmt chunk's sample rate and byte rate
    started = time.monotonic()
    if refused:
        with pytest.raises(AudioError, match=f"implausible sample rate \\({rate} Hz\\)"):
            decode_audio(bytes(data))
    else:
        assert decode_audio(bytes(data)).source_rate == rate
    assert time.monotonic() - started < 1.0


@settings(max_examples=150, **FUZZ)
@given(data=damaged_audio())
def test_decoder_fuzz(data: bytes) -> None:
    decode_checked(data)


@pytest.mark.slow
@settings(max_examples=1500, **FUZZ)
@given(data=damaged_audio())
def test_decoder_fuzz_long(data: bytes) -> None:
    decode_checked(data)


# --- the endpoint, over HTTP ---------------------------------------------------------------------------------


@settings(max_examples=150, **FUZZ)
@given(request=multipart_requests())
def test_multipart_fuzz(fuzz_server: httpx.Client, request: RawRequest) -> None:
    check_response(post_raw(fuzz_server, request))


@pytest.mark.slow
@settings(max_examples=1000, **FUZZ)
@given(request=multipart_requests())
def test_multipart_fuzz_long(fuzz_server: httpx.Client, request: RawRequest) -> None:
    check_response(post_raw(fuzz_server, request))


@settings(max_examples=100, **FUZZ)
@given(
    audio=damaged_audio(),
    fields=st.dictionaries(
        st.sampled_from(("response_format", "language", "temperature", "timestamp_granularities[]")),
        st.sampled_from(("json", "text", "srt", "vtt", "verbose_json", "en", "fr", "0", "0.5", "segment", "word")),
    ),
    identity=st.booleans(),
)
def test_damaged_audio_through_the_whole_service(
    fuzz_server: httpx.Client, audio: bytes, fields: dict[str, str], identity: bool
) -> None:
    """Well-formed requests carrying damaged audio: what the decoder accepts must also transcribe (the module's
    final check finds no failed job) and render in every format."""
    if identity:
        fields = {**fields, "user_uuid": "fuzz", "message_id": f"{time.monotonic_ns()}"}
    check_response(fuzz_server.post(TRANSCRIPTIONS, files={"file": ("vm", audio)}, data=fields))


@settings(max_examples=100, **FUZZ)
@given(
    path=st.text(min_size=1, max_size=80).filter(lambda s: s not in (".", "..")),
    params=st.dictionaries(
        st.sampled_from(("user_uuid", "message_id", "response_format")), st.text(max_size=300), max_size=3
    ),
)
def test_job_endpoints_fuzz(fuzz_server: httpx.Client, path: str, params: dict[str, str]) -> None:
    job_id = quote(path, safe="")
    for url in (f"{TRANSCRIPTIONS}/{job_id}", f"{TRANSCRIPTIONS}/{job_id}/result", f"{TRANSCRIPTIONS}/lookup"):
        response = fuzz_server.get(url, params=params)
        assert response.status_code < 500, response.text


# --- absurd sizes and headers, explicitly ----------------------------------------------------------------------


def test_ten_megabyte_ids_and_fields(fuzz_server: httpx.Client) -> None:
    huge = "u" * (10 * 1024 * 1024)
    response = fuzz_server.post(TRANSCRIPTIONS, files={"file": ("a.wav", b"RIFF")}, data={"user_uuid": huge})
    assert response.status_code == 413  # the whole body is past MAX_UPLOAD_MB (+ room for fields)
    one_mb = "m" * (900 * 1024)  # under the body limit, over the 64 KB field limit
    response = fuzz_server.post(
        TRANSCRIPTIONS, files={"file": ("a.wav", b"RIFF")}, data={"user_uuid": "u", "message_id": one_mb}
    )
    assert response.status_code == 400 and "maximum size" in response.json()["error"]["message"]


def test_huge_and_numerous_headers(fuzz_server: httpx.Client) -> None:
    host, port = urlsplit(str(fuzz_server.base_url)).hostname, urlsplit(str(fuzz_server.base_url)).port
    assert host and port
    cases = {
        "one 1 MB header": f"X-Big: {'a' * (1024 * 1024)}\r\n",
        "10 000 headers": "".join(f"X-H{i}: {i}\r\n" for i in range(10_000)),
        "1 MB content type": f"Content-Type: multipart/form-data; boundary={'b' * (1024 * 1024)}\r\n",
        "huge content length": "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 9" + "9" * 30 + "\r\n",
        "negative content length": "Content-Length: -1\r\n",
    }
    for name, headers in cases.items():
        request = f"POST {TRANSCRIPTIONS} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode()
        status = status_of(send_raw(host, port, request))
        assert status is None or status < 500, (name, status)  # refused or dropped, never a server fault
    assert fuzz_server.get("/health").status_code == 200


def test_no_boundary_wrong_types_repeated_fields(fuzz_server: httpx.Client) -> None:
    audio = (CORPUS / "decoder" / "wav-claims-740-mhz.wav").read_bytes()
    for content_type in ("multipart/form-data", "text/plain", "application/json", "audio/wav", ""):
        check_response(fuzz_server.post(TRANSCRIPTIONS, content=audio, headers={"Content-Type": content_type}))
    repeated = [("file", ("a.wav", audio)), ("file", ("b.wav", audio))]
    check_response(fuzz_server.post(TRANSCRIPTIONS, files=repeated))
    for name in ("model", "user_uuid", "temperature", "force"):
        body = fuzz_server.post(TRANSCRIPTIONS, files={"file": ("a.wav", audio)}, data={name: ["1", "2"]})
        assert body.status_code == 400 and "more than once" in body.json()["error"]["message"]


# --- the corpus: inputs that once broke something --------------------------------------------------------------


def corpus(kind: str) -> list[Path]:
    return sorted(p for p in (CORPUS / kind).glob("*") if p.is_file())


@pytest.mark.parametrize("path", corpus("decoder"), ids=lambda p: p.name)
def test_decoder_corpus(fuzz_server: httpx.Client, path: Path) -> None:
    data = path.read_bytes()
    decode_checked(data)
    check_response(fuzz_server.post(TRANSCRIPTIONS, files={"file": (path.name, data)}))


@pytest.mark.parametrize("path", corpus("http"), ids=lambda p: p.name)
def test_http_corpus(fuzz_server: httpx.Client, path: Path) -> None:
    """Raw requests (request line, headers, body), sent byte for byte."""
    url = urlsplit(str(fuzz_server.base_url))
    assert url.hostname and url.port
    started = time.monotonic()
    status = status_of(send_raw(url.hostname, url.port, path.read_bytes(), timeout=REQUEST_TIMEOUT))
    assert status is not None and status < 500, status
    assert time.monotonic() - started < REQUEST_BUDGET
