"""Server-sent events: OpenAI's ``stream=true`` through the official SDKs, and a job's events for a browser.

Both follow a job through the persistent queue; the gate holds the real engine after its first chunk so each test
can see text arrive while the job is still running (not all at once at the end).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.audio_fixtures import wav_bytes
from tests.support.gate import Gate
from tests.support.jobs import status, wait_until
from tests.support.server import running_server, wait_ready
from tests.support.tiny_parakeet import expected_text, render

TRANSCRIPTIONS = "/v1/audio/transcriptions"
# Three chunks of 5 s (chunk_max_secs below), one word each, then a last short one.
PIECES = [("▁hello", 1.0), ("▁world", 6.0), ("▁the", 10.0), ("▁cat", 13.0)]
TEXT = expected_text([p for p, _ in PIECES])
AUDIO = wav_bytes(render(PIECES, duration=14.0), 16000)


@pytest.fixture
def gated(settings) -> Iterator[tuple[str, Gate]]:
    gate = Gate(after_first_chunk=True)
    with running_server(settings.model_copy(update={"chunk_max_secs": 5.0}), gate.loader) as url:
        with httpx.Client(base_url=url) as client:
            wait_ready(client)
        yield url, gate


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)


def test_sdk_stream_prints_deltas_while_the_job_runs_then_the_full_text(gated):
    url, gate = gated
    with httpx.Client(base_url=url) as client:
        stream = sdk(url).audio.transcriptions.create(
            model="whisper-1", file=("vm.wav", io.BytesIO(AUDIO)), stream=True
        )
        events = iter(stream)
        first = next(events)
        assert first.type == "transcript.text.delta" and first.delta == "hello"
        # The first chunk's text came while the engine is still held after that chunk.
        job_id = stream.response.headers["x-job-id"]
        assert status(client, job_id) == "processing"
        gate.release.release()
        rest = list(events)
    deltas = [first.delta] + [e.delta for e in rest if e.type == "transcript.text.delta"]
    done = rest[-1]
    assert done.type == "transcript.text.done"
    assert "".join(deltas) == done.text == TEXT
    assert done.usage.type == "duration" and done.usage.seconds == 14


async def test_async_sdk_stream(settings):
    with running_server(settings) as url:
        with httpx.Client(base_url=url) as client:
            wait_ready(client)
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)
        stream = await client.audio.transcriptions.create(
            model="whisper-1", file=("vm.wav", io.BytesIO(AUDIO)), stream=True, include=["logprobs"]
        )
        events = [event async for event in stream]
        await client.close()
    assert [e.type for e in events][-1] == "transcript.text.done"
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == TEXT
    assert [lp.token for lp in events[-1].logprobs] == TEXT.split()
    assert all(lp.logprob <= 0 for lp in events[-1].logprobs)


def test_a_queued_stream_says_its_position_then_streams(settings):
    """The second job waits behind the first: its stream says where it is in the queue (an SSE comment)."""
    gate = Gate()  # holds each transcription before it starts
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_ready(client)
        first = client.post(
            TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}, data={"user_uuid": "u", "message_id": "first"}
        ).json()["job_id"]
        wait_until(lambda: status(client, first) == "processing", what="the first job to start")
        with client.stream("POST", TRANSCRIPTIONS, files={"file": ("b.wav", AUDIO)}, data={"stream": "true"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            assert next(lines) == ": queued, position 1"
            gate.release.release()
            gate.release.release()
            data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert data[-1]["type"] == "transcript.text.done" and data[-1]["text"] == TEXT


def test_job_events_follow_a_job_from_processing_to_completed(gated):
    url, gate = gated
    with httpx.Client(base_url=url, timeout=30) as client:
        job_id = client.post(
            TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}, data={"user_uuid": "u", "message_id": "m"}
        ).json()["job_id"]
        events = []
        with client.stream("GET", f"{TRANSCRIPTIONS}/{job_id}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            name = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if events[-1][1].get("text") == "hello":  # the first chunk is in: let the engine go on
                        gate.release.release()
    names = [n for n, _ in events]
    assert names[-1] == "completed" and set(names[:-1]) <= {"queued", "processing"}
    processing = [body for n, body in events if n == "processing"]
    assert any(body["text"] == "hello" and 0 < body["progress"] < 1 for body in processing)
    assert events[-1][1]["text"] == TEXT and events[-1][1]["job_id"] == job_id


def test_job_events_of_a_finished_job_end_at_once(client):
    job_id = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}).headers["x-job-id"]
    response = client.get(f"{TRANSCRIPTIONS}/{job_id}/events")
    assert response.text.startswith("event: completed\ndata: ")
    assert json.loads(response.text.split("data: ", 1)[1])["text"] == TEXT


def test_silence_is_a_completed_empty_transcript_cached_under_its_pair(client):
    silence = wav_bytes(render([], duration=3.0), 16000)
    form = {"user_uuid": "u", "message_id": "hung-up"}
    job = client.post(TRANSCRIPTIONS, files={"file": ("s.wav", silence)}, data=form).json()
    wait_until(lambda: status(client, job["job_id"]) == "completed", what="the silent job to complete")
    body = client.get(f"{TRANSCRIPTIONS}/{job['job_id']}").json()
    assert body["text"] == "" and body["duration"] == pytest.approx(3.0)
    again = client.post(TRANSCRIPTIONS, files={"file": ("s.wav", silence)}, data=form).json()
    assert again["cached"] is True and again["job_id"] == job["job_id"]
    result = f"{TRANSCRIPTIONS}/{job['job_id']}/result"
    assert client.get(result, params={"response_format": "srt"}).text == ""
    assert client.get(result, params={"response_format": "vtt"}).text.startswith("WEBVTT")
    sync = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="-", max_retries=0)
    assert sync.audio.transcriptions.create(model="whisper-1", file=("s.wav", io.BytesIO(silence))).text == ""


def test_streams_answer_even_when_the_client_reads_nothing_more(gated):
    """A client that drops the stream does not drop the job: it completes and stays retrievable."""
    url, gate = gated
    with httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}, data={"stream": "true"}) as r:
            job_id = r.headers["x-job-id"]
        gate.release.release()
        wait_until(lambda: status(client, job_id) == "completed", what="the dropped stream's job")
        assert client.get(f"{TRANSCRIPTIONS}/{job_id}").json()["text"] == TEXT


def test_stream_of_a_known_pair_answers_from_the_store(client):
    form = {"user_uuid": "u", "message_id": "known"}
    job_id = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}, data=form).json()["job_id"]
    wait_until(lambda: status(client, job_id) == "completed", what="the job")
    response = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", AUDIO)}, data={**form, "stream": "true"})
    data = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [d["type"] for d in data] == ["transcript.text.delta", "transcript.text.done"]
    assert data[-1]["text"] == TEXT and response.headers["x-job-id"] == job_id


def _failing_engines(settings):
    from wazo_stt.engine.loader import load_engines

    registry = load_engines(settings)

    def broken(audio, language, progress=None):
        raise RuntimeError("the model blew up")

    for engine in registry.engines:
        engine.transcribe = broken
    return registry


def test_a_failed_job_ends_the_stream_with_an_error_the_sdk_raises(settings):
    with running_server(settings, _failing_engines) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_ready(client)
        stream = sdk(url).audio.transcriptions.create(
            model="whisper-1", file=("vm.wav", io.BytesIO(AUDIO)), stream=True
        )
        with pytest.raises(openai.APIError, match="the model blew up"):
            list(stream)
        job_id = stream.response.headers["x-job-id"]
        events = client.get(f"{TRANSCRIPTIONS}/{job_id}/events").text
        assert events.startswith("event: failed\ndata: ") and "the model blew up" in events
