"""Decoders take turns (audio/turns.py): one thread decodes at a time, in short slices, never holding the lock
while its caller works, and the results are those of decoding alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.support.audio_fixtures import encoded, tone_with_click, wav_bytes
from wazo_stt.audio import AudioError, decode_audio, inspect_audio, turns
from wazo_stt.audio import decode as decode_module


def test_every_item_comes_out_in_order() -> None:
    assert list(turns.in_turns(iter(range(1000)))) == list(range(1000))
    assert list(turns.in_turns(iter([]))) == []


def test_the_lock_is_free_while_the_caller_works() -> None:
    seen = [turns._turn.locked() for _ in turns.in_turns(iter(range(50)))]
    assert seen == [False] * 50


def test_a_slice_ends_after_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(turns, "SLICE_SECONDS", 0.01)
    drawn: list[int] = []  # how many items had been drawn when each one reached the caller

    def slow() -> Iterator[int]:
        for i in range(20):
            drawn.append(i)
            time.sleep(0.004)
            yield i

    first_slice = []
    for item in turns.in_turns(slow()):
        first_slice.append(len(drawn))
        if item == 0:
            break
    # The first slice stopped after about 0.01 s (about 3 items of 4 ms, fewer on a loaded machine), not after all 20.
    assert 1 <= first_slice[0] < 20


def test_leaving_early_or_an_error_leaves_the_lock_free() -> None:
    for _ in turns.in_turns(iter(range(10))):
        break
    assert not turns._turn.locked()

    def failing() -> Iterator[int]:
        yield 1
        raise AudioError("undecodable", "broken")

    with pytest.raises(AudioError):
        list(turns.in_turns(failing()))
    assert not turns._turn.locked()


@pytest.fixture
def pulls_at_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The most threads seen inside the decoder's frame loop at the same moment (the real decoder, watched)."""
    real = decode_module._resampled
    inside = [0]
    most = [0]
    lock = threading.Lock()

    def watched(*args: object, **kwargs: object) -> Iterator[np.ndarray]:
        frames = real(*args, **kwargs)
        while True:
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            try:
                time.sleep(0.0005)  # widen the window two unsynchronised decoders would overlap in
                frame = next(frames)
            except StopIteration:
                return
            finally:
                with lock:
                    inside[0] -= 1
            yield frame

    monkeypatch.setattr(decode_module, "_resampled", watched)
    return most


def test_threads_decode_one_at_a_time_and_get_what_decoding_alone_gives(pulls_at_once: list[int]) -> None:
    files = [
        wav_bytes(tone_with_click(8000), 8000),
        encoded(tone_with_click(8000), 8000, "pcm_mulaw", "wav"),
        encoded(tone_with_click(44100), 44100, "libmp3lame", "mp3"),
    ] * 4
    alone = [decode_audio(data).samples for data in files]
    assert pulls_at_once[0] == 1
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda data: decode_audio(data).samples, files))
        durations = list(pool.map(lambda data: inspect_audio(data).duration, files))
    assert pulls_at_once[0] == 1
    for a, b, seconds in zip(alone, together, durations, strict=True):
        np.testing.assert_array_equal(a, b)
        assert seconds == len(a) / 16000
