"""OpenAI clients: the official SDK, pointed at our server, gets transcripts in every response format."""

from __future__ import annotations

import io

import openai
import pytest
import srt
import webvtt

from tests.support.audio_fixtures import wav_bytes
from tests.support.tiny_parakeet import FRAME_SECONDS, expected_text, render

# A 10 s voicemail: "hello world bonjour." then, after a pause, "the cat."
PIECES = [
    ("▁hello", 0.6),
    ("▁world", 1.4),
    ("▁bon", 2.4),
    ("jour", 2.8),
    (".", 3.3),
    ("▁the", 6.0),
    ("▁cat", 6.8),
    (".", 7.4),
]
TEXT = expected_text([p for p, _ in PIECES])


@pytest.fixture
def voicemail() -> bytes:
    return wav_bytes(render(PIECES, duration=10.0), 16000)


@pytest.fixture
def sdk(shared_client) -> openai.OpenAI:
    # One server for the module: each test's jobs are its own, and none looks at the others'.
    return openai.OpenAI(base_url=f"{shared_client.base_url}/v1", api_key="not-needed", max_retries=0)


def transcribe(sdk: openai.OpenAI, audio: bytes, **kwargs):
    return sdk.audio.transcriptions.create(model="whisper-1", file=("voicemail.wav", io.BytesIO(audio)), **kwargs)


def test_json(sdk, voicemail):
    assert transcribe(sdk, voicemail).text == TEXT


def test_text(sdk, voicemail):
    assert transcribe(sdk, voicemail, response_format="text").strip() == TEXT


def test_verbose_json_with_word_timestamps(sdk, voicemail):
    result = transcribe(sdk, voicemail, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert result.text == TEXT
    assert result.duration == pytest.approx(10.0, abs=0.01)
    assert [w.word for w in result.words] == TEXT.split()
    word_starts = [t for p, t in PIECES if p.startswith("▁")]
    for word, start in zip(result.words, word_starts, strict=True):
        assert abs(word.start - start) <= FRAME_SECONDS
        assert word.end >= word.start
    assert [s.text for s in result.segments] == ["hello world bonjour.", "the cat."]
    assert result.segments[1].start == pytest.approx(6.0, abs=FRAME_SECONDS)
    assert all(s.avg_logprob <= 0 for s in result.segments)


def test_openai_parity_language_name_usage_word_only_and_logprobs(sdk, voicemail):
    verbose = transcribe(sdk, voicemail, response_format="verbose_json", timestamp_granularities=["word"])
    assert verbose.language == "english"  # detected from the text, named as OpenAI names it
    assert verbose.segments is None and len(verbose.words) == len(TEXT.split())  # word only: no segments
    assert verbose.usage.type == "duration" and verbose.usage.seconds == 10
    plain = transcribe(sdk, voicemail, include=["logprobs"])
    assert plain.usage.type == "duration" and plain.usage.seconds == 10
    assert [lp.token for lp in plain.logprobs] == TEXT.split() and all(lp.logprob <= 0 for lp in plain.logprobs)
    with pytest.raises(openai.BadRequestError, match="verbose_json"):
        transcribe(sdk, voicemail, response_format="json", timestamp_granularities=["word"])
    with pytest.raises(openai.BadRequestError, match="transcriptions"):
        sdk.audio.translations.create(model="whisper-1", file=("v.wav", io.BytesIO(voicemail)))


def test_srt_and_vtt(sdk, voicemail):
    cues = list(srt.parse(transcribe(sdk, voicemail, response_format="srt")))
    assert [c.content for c in cues] == ["hello world bonjour.", "the cat."]
    assert abs(cues[0].start.total_seconds() - 0.6) <= FRAME_SECONDS
    captions = webvtt.from_buffer(io.StringIO(transcribe(sdk, voicemail, response_format="vtt"))).captions
    assert [c.text for c in captions] == ["hello world bonjour.", "the cat."]


def test_job_id_header_keeps_the_result_retrievable(sdk, voicemail, shared_client):
    client = shared_client
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="parakeet-tdt-0.6b-v3", file=("v.wav", io.BytesIO(voicemail))
    )
    job_id = raw.headers["x-job-id"]
    assert raw.parse().text == TEXT
    status = client.get(f"/v1/audio/transcriptions/{job_id}").json()
    assert status["status"] == "completed" and status["text"] == TEXT
    for fmt in ("json", "text", "srt", "vtt", "verbose_json"):
        response = client.get(f"/v1/audio/transcriptions/{job_id}/result", params={"response_format": fmt})
        assert response.status_code == 200, response.text
        assert "hello" in response.text


def test_models_list(sdk):
    ids = [m.id for m in sdk.models.list()]
    assert ids == ["parakeet-tdt-0.6b-v3", "whisper-1"]
    assert sdk.models.retrieve("whisper-1").id == "whisper-1"


def test_unknown_model_is_a_400_naming_the_available_ones(sdk, voicemail):
    with pytest.raises(openai.BadRequestError) as err:
        sdk.audio.transcriptions.create(model="gpt-4o-transcribe", file=("v.wav", io.BytesIO(voicemail)))
    assert "parakeet-tdt-0.6b-v3" in err.value.message and "whisper-1" in err.value.message
    assert err.value.body["type"] == "invalid_request_error"
