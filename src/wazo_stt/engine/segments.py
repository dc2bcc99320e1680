"""Group words into readable segments: one segment is one subtitle cue and one verbose_json segment.

A segment ends at a sentence end, at a pause, or before it would outgrow two subtitle lines or seven seconds.
Word times never overlap, so neither do segments.
"""

from __future__ import annotations

from collections.abc import Sequence

from wazo_stt.domain import Segment
from wazo_stt.engine.words import RecognizedWord
from wazo_stt.text_utils import CUE_MAX_SECONDS, SENTENCE_END, fits_in_cue

PAUSE_SECONDS = 0.8


def build_segments(words: Sequence[RecognizedWord]) -> list[Segment]:
    groups: list[list[RecognizedWord]] = []
    current: list[RecognizedWord] = []
    for word in words:
        if current and _must_break_before(current, word):
            groups.append(current)
            current = []
        current.append(word)
        if word.word.endswith(SENTENCE_END):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return [_segment(i, group) for i, group in enumerate(groups)]


def _must_break_before(current: list[RecognizedWord], word: RecognizedWord) -> bool:
    if word.start - current[-1].end >= PAUSE_SECONDS:
        return True
    if word.end - current[0].start > CUE_MAX_SECONDS:
        return True
    return not fits_in_cue(" ".join(w.word for w in [*current, word]))


def _segment(index: int, words: list[RecognizedWord]) -> Segment:
    logprobs = [lp for w in words for lp in w.logprobs]
    return Segment(
        id=index,
        start=round(words[0].start, 3),
        end=round(words[-1].end, 3),
        text=" ".join(w.word for w in words),
        tokens=[t for w in words for t in w.token_ids],
        avg_logprob=round(sum(logprobs) / len(logprobs), 4) if logprobs else 0.0,
    )
