"""A recording's next chunk runs beside the current one while the process has a spare inference
(engine/parallel.py): results in order, never more look-ahead than the slots allow, nothing leaked on failure,
and the transcript is the one chunk-at-a-time gives."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

from tests.support.speech import spoken
from tests.support.tiny_parakeet import render
from wazo_stt.config import Settings
from wazo_stt.engine.parakeet import ParakeetRecognizer
from wazo_stt.engine.parallel import InferenceSlots, in_order
from wazo_stt.engine.pipeline import ChunkedEngine, ChunkPlanner
from wazo_stt.engine.vad import SpeechDetector
from wazo_stt.host import at_once

SR = 16_000


class Tracker:
    """Work that records how many calls of it run at once."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, item: int) -> int:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds * (2 if item % 2 == 0 else 1))  # even items slower: they finish out of order
        with self._lock:
            self.now -= 1
        return item * 10


class OverlapSpy:
    """The real recogniser, recording how many of its calls run at once (each held a little, so they can meet)."""

    def __init__(self, real: ParakeetRecognizer) -> None:
        self.real = real
        self.model_id, self.owned_by, self.languages = real.model_id, real.owned_by, real.languages
        self.tracker = Tracker(0.02)

    @property
    def most(self) -> int:
        return self.tracker.most

    def recognize(self, chunk, language):
        self.tracker(1)
        return self.real.recognize(chunk, language)

    def language_label(self, language):
        return self.real.language_label(language)


def test_results_come_back_in_order_with_two_at_once():
    slots, work = InferenceSlots(2), Tracker()
    assert list(in_order(work, range(8), slots)) == [i * 10 for i in range(8)]
    assert work.most == 2
    assert slots.running == 0


def test_the_look_ahead_waits_while_another_job_holds_the_spare_slot():
    slots, work = InferenceSlots(2), Tracker()
    assert slots.take(look_ahead=False)  # another job's chunk is running
    assert list(in_order(work, range(6), slots)) == [i * 10 for i in range(6)]
    assert work.most == 1  # its own chunk ran, never a second one
    slots.give_back()
    assert slots.running == 0


def test_two_jobs_each_run_their_own_chunks_and_share_the_slots():
    slots = InferenceSlots(2)
    works = [Tracker(), Tracker()]
    results: list[list[int]] = [[], []]

    def job(n: int) -> None:
        results[n] = list(in_order(works[n], range(10), slots))

    threads = [threading.Thread(target=job, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [[i * 10 for i in range(10)]] * 2  # neither waited for the other to finish
    assert slots.running == 0


def test_no_look_ahead_while_memory_is_short():
    memory = {"ok": False}
    slots, work = InferenceSlots(2, memory_ok=lambda: memory["ok"]), Tracker()
    assert list(in_order(work, range(4), slots)) == [i * 10 for i in range(4)]
    assert work.most == 1
    memory["ok"] = True
    assert list(in_order(work, range(4), slots)) == [i * 10 for i in range(4)]
    assert work.most == 2


@pytest.mark.parametrize("slots", [None, InferenceSlots(1)], ids=["no slots", "one slot"])
def test_without_a_spare_slot_items_run_one_by_one_on_the_callers_thread(slots):
    threads = set()

    def work(item: int) -> int:
        threads.add(threading.get_ident())
        return item

    assert list(in_order(work, range(5), slots)) == list(range(5))
    assert threads == {threading.get_ident()}


def test_a_failing_item_raises_in_order_and_gives_every_slot_back():
    slots = InferenceSlots(2)

    def work(item: int) -> int:
        time.sleep(0.01)
        if item == 3:
            raise RuntimeError("inference failed")
        return item

    seen = []
    with pytest.raises(RuntimeError, match="inference failed"):
        for result in in_order(work, range(8), slots):
            seen.append(result)
    assert seen == [0, 1, 2]
    assert slots.running == 0


def test_leaving_early_gives_every_slot_back():
    """A dropped job stops reading results (its progress callback raises): the chunk in flight ends, no slot leaks."""
    slots = InferenceSlots(2)
    results = in_order(Tracker(), range(8), slots)
    assert next(results) == 0
    results.close()
    assert slots.running == 0


def test_chunks_at_once_setting():
    assert at_once("auto", cores=1) == 1
    assert at_once("auto", cores=2) == 2
    assert at_once("auto", cores=16) == 2
    assert at_once(3) == 3
    assert Settings(_env_file=None).chunks_at_once == "auto"
    assert Settings(_env_file=None, chunks_at_once="1").chunks_at_once == 1
    with pytest.raises(ValidationError, match="1 or more"):
        Settings(_env_file=None, chunks_at_once="0")


def test_a_long_recording_gives_the_same_transcript_two_chunks_at_a_time(tiny_model_dir):
    """Real VAD on espeak-ng speech, the tiny Parakeet: words, times and progress as with one chunk at a time."""
    speech = spoken("Hello, this is a voicemail for Alice. Please call me back before six o'clock.") * 0.5
    pieces = []
    for i in range(8):  # eight messages with a marker word each, 4 s apart: several chunks
        tone = render([("▁cat", 1.0 + 0.1 * i)], duration=len(speech) / SR, noise_floor=0)
        pieces += [(speech + tone[: len(speech)]).astype(np.float32), np.zeros(4 * SR, dtype=np.float32)]
    audio = np.concatenate(pieces)
    recognizer, detector = ParakeetRecognizer(tiny_model_dir), SpeechDetector()
    calls = []

    def progress_of(log):
        return lambda done, text: log.append((done, text))

    one_by_one = ChunkedEngine(recognizer, ChunkPlanner(detector, max_seconds=20)).transcribe(
        audio, None, progress_of(calls)
    )
    slots = InferenceSlots(2)
    calls_two = []
    spy = OverlapSpy(recognizer)
    two_at_once = ChunkedEngine(spy, ChunkPlanner(detector, max_seconds=20), slots).transcribe(
        audio, None, progress_of(calls_two)
    )
    assert spy.most == 2  # chunks really ran two at a time
    assert len(calls) >= 4  # several chunks
    assert two_at_once == one_by_one
    assert calls_two == calls  # the same progress, in the same order
    assert sum(w.word.startswith("cat") for w in two_at_once.words) == 8
    assert slots.running == 0
