"""Long recordings: Silero VAD skips silence and cuts in pauses, fixed chunks overlap, seams keep every word once,
and word times are in seconds of the ORIGINAL audio."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tests.support.audio_fixtures import encoded
from tests.support.speech import spoken
from tests.support.tiny_parakeet import FRAME_SECONDS, VOCAB, render
from wazo_stt.audio import decode_audio
from wazo_stt.engine.chunking import speech_chunks
from wazo_stt.engine.parakeet import ParakeetRecognizer
from wazo_stt.engine.pipeline import ChunkedEngine, ChunkPlanner
from wazo_stt.engine.vad import SpeechDetector

SR = 16_000
WORD_PIECES = [p for p in VOCAB if p.startswith("▁")]
MESSAGE = "Hello, this is a voicemail for Alice. Please call me back before six o'clock."


class SpyRecognizer:
    """The real recogniser, recording which stretches of audio reach it."""

    def __init__(self, real: ParakeetRecognizer) -> None:
        self.real = real
        self.model_id, self.owned_by, self.languages = real.model_id, real.owned_by, real.languages
        self.seconds_sent = 0.0
        self.calls = 0

    def recognize(self, chunk, language):
        self.seconds_sent += len(chunk) / SR
        self.calls += 1
        return self.real.recognize(chunk, language)

    def language_label(self, language):
        return self.real.language_label(language)


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir) -> ParakeetRecognizer:
    return ParakeetRecognizer(tiny_model_dir)


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector()


def test_speech_chunks_join_short_pauses_and_cut_long_speech_with_overlap():
    s = SR
    spans = [(1 * s, 4 * s), (4 * s + s // 2, 9 * s), (20 * s, 95 * s)]
    chunks = speech_chunks(spans, SR, max_seconds=30, overlap_seconds=2, join_gap_seconds=1)
    assert (chunks[0].start, chunks[0].end) == (1 * s, 9 * s)  # joined across a 0.5 s pause
    assert chunks[0].keep_from == -math.inf and chunks[0].keep_until == math.inf
    long = chunks[1:]
    assert long[0].start == 20 * s and long[-1].end == 95 * s
    assert all(c.end - c.start <= 30 * s for c in long)
    for a, b in itertools.pairwise(long):
        assert b.start == a.end - 2 * s and a.keep_until == b.keep_from
    # The 11 s of silence between 9 s and 20 s is never sent.
    assert not any(c.start < 20 * s and c.end > 9 * s for c in chunks)


def test_joined_spans_are_sent_back_to_back_without_the_pauses():
    s = SR
    spans = [(1 * s, 4 * s), (5 * s, 9 * s), (11 * s, 15 * s), (40 * s, 45 * s)]
    chunks = speech_chunks(spans, SR, max_seconds=12, overlap_seconds=2, join_gap_seconds=3, kept_pause_seconds=0.5)
    first, second = chunks
    # 0.25 s of each pause is kept on each side; what is left of the 1 s and 2 s pauses is not sent.
    assert first.pieces == ((1 * s, 4 * s + s // 4), (5 * s - s // 4, 9 * s + s // 4), (11 * s - s // 4, 15 * s))
    assert first.samples == 12 * s  # 11 s of speech and two kept half-second pauses, not 14 s
    audio = np.arange(50 * s, dtype=np.float32)
    assert np.array_equal(first.audio(audio), np.concatenate([audio[a:b] for a, b in first.pieces]))
    # The 25 s pause is longer than the join gap: a chunk of its own, whole.
    assert (second.start, second.end, second.pieces) == (40 * s, 45 * s, ())
    # What the bound counts is what is sent: a fourth span would not fit in 12 s.
    assert len(speech_chunks(spans[:3], SR, 11, 2, 3, 0.5)) == 2


def test_times_in_a_joined_chunk_map_back_to_the_original_audio():
    s = SR
    chunk = speech_chunks([(1 * s, 4 * s), (10 * s, 12 * s)], SR, 20, 2, 7, 0.0)[0]
    assert chunk.pieces == ((1 * s, 4 * s), (10 * s, 12 * s))
    assert chunk.to_original(0.0, SR) == 1.0
    assert chunk.to_original(2.5, SR) == 3.5
    assert chunk.to_original(3.0, SR) == 10.0  # the first sample of the second piece
    assert chunk.to_original(4.5, SR) == 11.5
    assert chunk.to_original(5.2, SR) == pytest.approx(12.2)  # past the end: extrapolated from the last piece
    assert speech_chunks([(s, 4 * s)], SR, 20, 2, 7, 0.0)[0].to_original(0.5, SR) == 1.5
    # A word cannot span the left-out pause: one that runs on past the cut ends where its piece ends.
    assert chunk.word_to_original(2.9, 3.4, SR) == pytest.approx((3.9, 4.0))
    assert chunk.word_to_original(2.4, 3.2, SR) == pytest.approx((3.4, 4.0))
    assert chunk.word_to_original(2.5, 3.0, SR) == (3.5, 4.0)  # ends at the cut: stays in the first piece
    assert chunk.word_to_original(3.2, 3.6, SR) == pytest.approx((10.2, 10.6))


def test_vad_leaves_pauses_out_of_a_chunk_and_keeps_word_times(recognizer, detector):
    """Two messages 2.5 s apart, joined in one chunk: the pause is not sent, the markers keep their times."""
    message = voicemail_with_marker(2.0)
    pause = 2.5
    audio = np.concatenate([np.zeros(SR), message, np.zeros(int(pause * SR)), message, np.zeros(SR)])
    second = 1.0 + len(message) / SR + pause
    spy = SpyRecognizer(recognizer)
    planner = ChunkPlanner(detector, max_seconds=30, join_gap_seconds=3.0)
    transcript = ChunkedEngine(spy, planner).transcribe(audio.astype(np.float32), None)

    assert spy.calls == 1  # one chunk: the context of both messages
    assert spy.seconds_sent <= 2 * len(message) / SR + 1.0  # the pause (less the VAD's padding) was left out
    cats = [w for w in transcript.words if w.word.startswith("cat")]
    assert [w.start for w in cats] == pytest.approx([3.0, second + 2.0], abs=FRAME_SECONDS + 0.05)


def test_seams_lose_and_double_nothing(recognizer):
    """Fixed 5 s chunks with 2 s overlap over 40 s of bursts: every token once, at its time."""
    starts = np.arange(0.3, 39.5, 0.55)
    pieces = [(WORD_PIECES[i % len(WORD_PIECES)], float(t)) for i, t in enumerate(starts)]
    engine = ChunkedEngine(recognizer, ChunkPlanner(None, max_seconds=5, overlap_seconds=2))
    transcript = engine.transcribe(render(pieces, duration=40.0), None)
    assert [w.word for w in transcript.words] == [p.lstrip("▁") for p, _ in pieces]
    for word, (_, at) in zip(transcript.words, pieces, strict=True):
        assert abs(word.start - at) <= FRAME_SECONDS
    for a, b in zip(transcript.words, transcript.words[1:], strict=False):
        assert a.end <= b.start


def test_progress_is_reported_after_each_chunk_in_audio_sent(recognizer):
    engine = ChunkedEngine(recognizer, ChunkPlanner(None, max_seconds=5, overlap_seconds=2))
    reported: list[tuple[float, str]] = []
    audio = render([("▁hello", 1.0), ("▁world", 7.0)], duration=12.0)
    engine.transcribe(audio, None, lambda done, text: reported.append((done, text)))
    assert [done for done, _ in reported] == pytest.approx([5 / 18, 10 / 18, 15 / 18, 1.0])  # 0-5, 3-8, 6-11, 9-12 s
    # The text so far comes with each report, growing by appending: what a streaming client is sent.
    assert [text for _, text in reported] == ["hello", "hello", "hello world", "hello world"]  # 7 s: the 3rd chunk


def test_word_times_are_right_for_8khz_telephone_audio(recognizer):
    pieces = [("▁hello", 0.4), ("▁world", 1.1), ("▁the", 2.3), ("▁cat", 3.05)]
    mulaw = encoded(render(pieces, duration=4.0, sample_rate=8000), 8000, "pcm_mulaw", "wav")
    audio = decode_audio(mulaw)
    assert audio.source_rate == 8000
    transcript = ChunkedEngine(recognizer, ChunkPlanner(None)).transcribe(audio.samples, None)
    assert [w.word for w in transcript.words] == ["hello", "world", "the", "cat"]
    for word, (_, at) in zip(transcript.words, pieces, strict=True):
        assert abs(word.start - at) <= FRAME_SECONDS


def voicemail_with_marker(marker_at: float) -> np.ndarray:
    """espeak-ng speech with a ``▁cat`` tone burst mixed in ``marker_at`` seconds after it starts."""
    speech = spoken(MESSAGE) * 0.5
    tone = render([("▁cat", marker_at)], duration=len(speech) / SR, noise_floor=0)
    return (speech + tone[: len(speech)]).astype(np.float32)


def test_vad_skips_silence_and_keeps_times_of_the_original_audio(recognizer, detector):
    message = voicemail_with_marker(2.0)
    gap = 20.0
    audio = np.concatenate([np.zeros(SR), message, np.zeros(int(gap * SR)), message, np.zeros(2 * SR)])
    second = 1.0 + len(message) / SR + gap
    spy = SpyRecognizer(recognizer)
    transcript = ChunkedEngine(spy, ChunkPlanner(detector)).transcribe(audio.astype(np.float32), None)

    assert spy.seconds_sent < 0.5 * len(audio) / SR  # the 23 s of silence never reached the model
    cats = [w for w in transcript.words if w.word.startswith("cat")]
    assert [round(w.start, 1) for w in cats] == pytest.approx([3.0, second + 2.0], abs=FRAME_SECONDS + 0.05)
    speech_regions = [(1.0, 1.0 + len(message) / SR), (second, second + len(message) / SR)]
    for word in transcript.words:
        assert any(a - 0.3 <= word.start <= b + 0.3 for a, b in speech_regions), word
    assert transcript.duration == pytest.approx(len(audio) / SR, abs=0.001)


@pytest.mark.slow
def test_twenty_minutes_transcribe_with_segments_covering_the_speech(recognizer, detector):
    """A 20-minute call: voicemail-like messages every ~12 s; each message's marker comes back once, on time."""
    message = voicemail_with_marker(2.0)
    period = len(message) / SR + 7.0
    count = int(20 * 60 / period)
    audio = np.zeros(int(20 * 60 * SR), dtype=np.float32)
    expected = []  # when each marker sounds
    for i in range(count):
        at = 0.5 + i * period
        audio[int(at * SR) : int(at * SR) + len(message)] += message
        expected.append(at + 2.0)
    transcript = ChunkedEngine(recognizer, ChunkPlanner(detector)).transcribe(audio, None)
    cats = [w.start for w in transcript.words if w.word.startswith("cat")]
    assert len(cats) == count
    assert np.max(np.abs(np.array(cats) - np.array(expected))) <= FRAME_SECONDS + 0.05
    for at in expected:  # every message is covered by a segment
        assert any(seg.start <= at + 3.0 and seg.end >= at - 2.0 for seg in transcript.segments)
    for a, b in zip(transcript.segments, transcript.segments[1:], strict=False):
        assert a.end <= b.start


def test_server_default_path_uses_vad(settings):
    """Through HTTP with the shipped defaults (VAD on): the marker in each message comes back at its time."""
    import io

    import httpx
    import openai

    from tests.support.audio_fixtures import wav_bytes
    from tests.support.server import running_server, wait_ready

    settings.enable_vad = True
    message = voicemail_with_marker(1.0)
    audio = np.concatenate([np.zeros(SR // 2), message, np.zeros(15 * SR), message]).astype(np.float32)
    second = 0.5 + len(message) / SR + 15
    with running_server(settings) as url:
        with httpx.Client(base_url=url) as client:
            wait_ready(client)
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)
        result = sdk.audio.transcriptions.create(
            model="whisper-1",
            file=("vm.wav", io.BytesIO(wav_bytes(audio, SR))),
            response_format="verbose_json",
            timestamp_granularities=["word"],
        )
    cats = [w.start for w in result.words if w.word.startswith("cat")]
    assert cats == pytest.approx([1.5, second + 1.0], abs=FRAME_SECONDS + 0.05)
    assert result.duration == pytest.approx(len(audio) / SR, abs=0.01)


def test_vad_pad_ms_sets_the_silence_sent_around_speech(settings):
    """VAD_PAD_MS reaches the detector the server builds: speech starts earlier by the padding."""
    from wazo_stt.engine.loader import load_engines

    audio = np.concatenate([np.zeros(2 * SR), spoken(MESSAGE), np.zeros(2 * SR)]).astype(np.float32)
    settings.enable_vad = True
    bounds = {}
    for pad_ms in (0, 300):
        settings.vad_pad_ms = pad_ms
        (engine,) = load_engines(settings).engines
        spans = engine.planner.detector.speech_spans(audio)
        bounds[pad_ms] = spans[0][0]
    assert bounds[0] - bounds[300] == pytest.approx(0.3 * SR, abs=0.01 * SR)
