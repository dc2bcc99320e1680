"""Silero runs long audio as side-by-side streams (engine/vad.py): the speech it finds must be the speech one long
pass finds, at the same places; short voicemails must go through exactly as one pass."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.speech import spoken
from wazo_stt.engine import vad
from wazo_stt.engine.vad import SpeechDetector

SR = 16_000
SENTENCES = [
    "Hello, this is a voicemail for Alice.",
    "Please call me back before six o'clock.",
    "The parcel will arrive on Tuesday morning between eight and noon.",
    "My number is five five five, one two three four.",
]


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector()


def one_pass(detector: SpeechDetector, audio: np.ndarray) -> list[tuple[int, int]]:
    """onnx-asr's own segmentation, one stream from start to end: what the streams must agree with."""
    (spans,) = detector._vad.segment_batch(audio[None, :], np.array([len(audio)]), SR, **detector._options)
    return [(int(start), min(int(end), len(audio))) for start, end in spans]


def conversation(seconds: float, seed: int) -> np.ndarray:
    """Sentences separated by pauses of 0.5-3 s, up to ``seconds`` long."""
    rng = np.random.default_rng(seed)
    pieces, total, i = [], 0, 0
    while total < seconds * SR:
        speech = spoken(SENTENCES[i % len(SENTENCES)])
        pause = np.zeros(int(rng.uniform(0.5, 3.0) * SR), dtype=np.float32)
        pieces += [speech, pause]
        total += len(speech) + len(pause)
        i += 1
    return np.concatenate(pieces)[: int(seconds * SR)]


def test_a_voicemail_is_one_stream_and_exactly_one_pass(detector):
    audio = conversation(20, seed=1)
    assert len(audio) < 1.5 * vad.STREAM_STEPS * vad.HOP
    assert detector._segment(audio) == one_pass(detector, audio)


def test_a_long_recording_in_streams_finds_the_same_speech_at_the_same_places(detector):
    audio = conversation(150, seed=2)  # ten 15 s streams, cuts anywhere in sentences and pauses
    streams = detector._segment(audio)
    single = one_pass(detector, audio)
    assert len(streams) == len(single)
    for (start, end), (ref_start, ref_end) in zip(streams, single, strict=True):
        # Where one pass is undecided a step either way (32 ms) may flip; a misplaced stream would be seconds off.
        assert abs(start - ref_start) <= 2 * vad.HOP and abs(end - ref_end) <= 2 * vad.HOP
    sent, ref_sent = (sum(e - s for s, e in spans) for spans in (streams, single))
    assert abs(sent - ref_sent) <= 0.005 * ref_sent


def test_streams_are_run_in_bounded_batches(detector, monkeypatch):
    """Hours of audio are not copied into one batch: at most MAX_STREAMS streams at a time, the same spans."""
    audio = conversation(150, seed=2)
    whole = detector._segment(audio)
    monkeypatch.setattr(vad, "MAX_STREAMS", 3)
    widths = []
    encode = detector._vad._encode

    def spy(batch, *args):
        widths.append(batch.shape[0])
        return encode(batch, *args)

    monkeypatch.setattr(detector._vad, "_encode", spy)
    assert detector._segment(audio) == whole
    assert widths == [3, 3, 3, 1]
