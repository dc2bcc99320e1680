"""VAD on hostile audio (issue 14): hours of near-silence cost a NumPy pass, not a Silero pass.

One 426 KB file (7 s of speech, then 4 hours of silence) held a worker ~170 s, nearly all of it Silero VAD
over the silence. Long quiet stretches are now skipped before Silero; ordinary recordings go through whole.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.audio_fixtures import sine
from wazo_stt.engine.vad import QUIET_BLOCK, SAMPLE_RATE, SpeechDetector, audible_regions


def noise(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal(round(seconds * SAMPLE_RATE))).astype(np.float32)


def test_a_recording_with_short_pauses_is_one_region() -> None:
    audio = np.concatenate([sine(SAMPLE_RATE, 2, 300, 0.3), np.zeros(5 * SAMPLE_RATE, np.float32), noise(2, 0.1)])
    assert audible_regions(audio) == [(0, audio.size)]


def test_long_silence_is_cut_out_keeping_a_block_of_context() -> None:
    voice = sine(SAMPLE_RATE, 2, 300, 0.3)
    quiet = noise(600, 0.0002)  # dither, peaks under -54 dBFS: what a "silent" lossy file decodes to
    audio = np.concatenate([voice, quiet, voice])
    regions = audible_regions(audio)
    assert len(regions) == 2
    (a, b), (c, d) = regions
    assert a == 0 and voice.size <= b <= voice.size + 2 * QUIET_BLOCK
    assert audio.size - voice.size - 2 * QUIET_BLOCK <= c <= audio.size - voice.size and d == audio.size
    assert (b - a) + (d - c) < 6 * SAMPLE_RATE  # of 604 s


def test_silence_only_has_no_region() -> None:
    assert audible_regions(np.zeros(100 * SAMPLE_RATE, np.float32)) == []
    assert audible_regions(np.zeros(0, np.float32)) == []


@pytest.mark.parametrize("size", [1, QUIET_BLOCK - 1, QUIET_BLOCK, QUIET_BLOCK + 1])
def test_a_loud_tail_shorter_than_a_block_is_kept(size: int) -> None:
    audio = np.zeros(size, np.float32)
    audio[-1] = 0.5
    assert audible_regions(audio) == [(0, size)]


def test_silero_sees_only_the_audible_part_of_a_silence_bomb() -> None:
    detector = SpeechDetector()
    seen: list[int] = []
    real = detector._vad.segment_batch

    def counting(waveforms, lengths, *args, **kwargs):
        seen.append(int(lengths[0]))
        return real(waveforms, lengths, *args, **kwargs)

    detector._vad.segment_batch = counting
    audio = np.concatenate([noise(3, 0.2), np.zeros(3600 * SAMPLE_RATE, np.float32)])  # 3 s, then an hour
    detector.speech_spans(audio)
    assert sum(seen) < 4 * SAMPLE_RATE, seen
