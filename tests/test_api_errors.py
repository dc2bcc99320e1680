"""Every error path of API.md: a clear 4xx in OpenAI's shape, nothing queued, the server still healthy."""

from __future__ import annotations

import httpx
import pytest

from tests.support.audio_fixtures import wav_bytes
from tests.support.gate import Gate
from tests.support.jobs import status, wait_until
from tests.support.server import running_server, wait_ready
from tests.support.tiny_parakeet import render

TRANSCRIPTIONS = "/v1/audio/transcriptions"
AUDIO = wav_bytes(render([("▁hello", 0.3)], duration=1.0), 16000)


def assert_openai_error(response: httpx.Response, status: int, *words: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status < 429 else error["type"])
    for word in words:
        assert word in error["message"], error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("files", "data", "words", "param"),
    [
        (None, {"model": "whisper-1"}, ["file or url"], "file"),
        ({"file": ("a.wav", AUDIO)}, {"url": "http://127.0.0.1:9/a.wav"}, ["not both"], "url"),
        ({"file": ("a.wav", AUDIO)}, {"user_uuid": "u"}, ["message_id is required"], "message_id"),
        ({"file": ("a.wav", AUDIO)}, {"message_id": "m"}, ["user_uuid is required"], "user_uuid"),
        ({"file": ("a.wav", AUDIO)}, {"response_format": "docx"}, ["docx", "verbose_json"], "response_format"),
        ({"file": ("a.wav", AUDIO)}, {"model": "nope"}, ["nope", "whisper-1"], "model"),
        ({"file": ("a.wav", AUDIO)}, {"language": "zz"}, ["zz", "fr"], "language"),
        ({"file": ("a.wav", AUDIO)}, {"temperature": "hot"}, ["temperature"], "temperature"),
        ({"file": ("a.wav", AUDIO)}, {"temperature": "7"}, ["temperature"], "temperature"),
        ({"file": ("a.wav", AUDIO)}, {"timestamp_granularities[]": "char"}, ["char"], "timestamp_granularities"),
        ({"file": ("a.wav", AUDIO)}, {"force": "maybe"}, ["force"], "force"),
        ({"file": ("a.wav", AUDIO)}, {"user_uuid": "u" * 300, "message_id": "m"}, ["longer"], "user_uuid"),
        ({"file": ("a.wav", b"")}, {}, ["empty"], "file"),
        ({"file": ("a.wav", b"this is not audio at all" * 50)}, {}, ["decode"], "file"),
        (
            {"file": ("a.wav", AUDIO)},
            {"timestamp_granularities[]": "word"},
            ["verbose_json"],
            "timestamp_granularities",
        ),
        ({"file": ("a.wav", AUDIO)}, {"include[]": "tokens"}, ["logprobs"], "include"),
        ({"file": ("a.wav", AUDIO)}, {"include[]": "logprobs", "response_format": "text"}, ["json"], "include"),
        ({"file": ("a.wav", AUDIO)}, {"stream": "true", "response_format": "srt"}, ["json or text"], "stream"),
        ({"file": ("a.wav", AUDIO)}, {"stream": "maybe"}, ["stream"], "stream"),
        (None, {"file": "just text"}, ["uploaded file"], "file"),
    ],
)
def test_bad_submissions(shared_client, files, data, words, param):
    response = shared_client.post(TRANSCRIPTIONS, files=files, data=data)
    assert_openai_error(response, 400, *words, param=param)
    health = shared_client.get("/health").json()
    assert health["status"] == "healthy" and health["db_stats"]["total"] == 0


def test_url_errors_are_400_naming_the_status(shared_client):
    client = shared_client
    error = assert_openai_error(
        client.post(TRANSCRIPTIONS, data={"url": "http://127.0.0.1:9/vm.wav?token=SECRET"}), 400, param="url"
    )
    assert "SECRET" not in error["message"]
    assert_openai_error(client.post(TRANSCRIPTIONS, data={"url": "ftp://pbx/vm.wav"}), 400, "http", param="url")


def test_too_long_audio(settings):
    settings.max_audio_duration_secs = 0.5
    with running_server(settings) as url, httpx.Client(base_url=url) as client:
        wait_ready(client)
        response = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)})
        assert_openai_error(response, 400, "MAX_AUDIO_DURATION_SECS", param="file")


def test_upload_too_large_is_413_before_the_body_is_read(shared_client):
    client = shared_client
    big = b"\0" * (7 * 1024 * 1024)  # the limit is 5 MB in these tests
    assert_openai_error(client.post(TRANSCRIPTIONS, files={"file": ("a.wav", big)}), 413, "5 MB")

    def chunked():  # no Content-Length: stopped while streaming
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(80):
            yield b"\0" * (128 * 1024)

    response = client.post(
        TRANSCRIPTIONS, content=chunked(), headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert_openai_error(response, 413, "MAX_UPLOAD_MB")
    assert client.get("/health").json()["db_stats"]["total"] == 0


def test_unknown_job_and_lookup_without_parameters(shared_client):
    client = shared_client
    assert_openai_error(client.get(f"{TRANSCRIPTIONS}/does-not-exist"), 404, "does-not-exist")
    assert_openai_error(client.get(f"{TRANSCRIPTIONS}/does-not-exist/result"), 404)
    assert_openai_error(client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u"}), 400, "message_id")
    assert_openai_error(client.get(f"{TRANSCRIPTIONS}/lookup"), 400, "user_uuid")
    assert_openai_error(client.get(f"{TRANSCRIPTIONS}/does-not-exist/events"), 404, "does-not-exist")


def test_translations_are_refused_naming_what_is_supported(shared_client):
    response = shared_client.post(
        "/v1/audio/translations", files={"file": ("a.wav", AUDIO)}, data={"model": "whisper-1"}
    )
    error = assert_openai_error(response, 400, "/v1/audio/transcriptions")
    assert error["code"] == "unsupported_endpoint"


def test_queue_full_is_429_with_retry_after(settings):
    settings.max_queue_size = 1
    gate = Gate()
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url) as client:
        wait_ready(client)
        ids = []
        for i in range(2):  # one processing (held by the gate), one queued: the queue is full
            ids.append(
                client.post(
                    TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}, data={"user_uuid": "u", "message_id": str(i)}
                ).json()["job_id"]
            )
            if i == 0:
                wait_until(lambda: status(client, ids[0]) == "processing", what="the first job to start")
        response = client.post(
            TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}, data={"user_uuid": "u", "message_id": "2"}
        )
        error = assert_openai_error(response, 429, "queue is full")
        assert error["type"] == "rate_limit_error"
        assert int(response.headers["retry-after"]) > 0
        gate.release.release()
        gate.release.release()


def test_missing_model_gives_clear_503(settings, tmp_path):
    settings.model_path = tmp_path / "no-model-here"
    settings.embedded_fallback = False  # with it (the default), the embedded Whisper serves: tests/test_web_fallback.py
    with running_server(settings) as url, httpx.Client(base_url=url) as client:
        with pytest.raises(RuntimeError) as err:
            wait_ready(client)
        assert "no-model-here" in str(err.value) and "download-model" in str(err.value)
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        error = assert_openai_error(
            client.post(TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}), 503, "download-model"
        )
        assert error["type"] == "server_error"


def test_broken_model_file_gives_clear_503(settings, tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "encoder-model.int8.onnx").write_bytes(b"garbage")
    settings.model_path = broken
    with (
        running_server(settings) as url,
        httpx.Client(base_url=url) as client,
        pytest.raises(RuntimeError, match="Could not load the Parakeet model"),
    ):
        wait_ready(client)
