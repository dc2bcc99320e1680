"""Token → word assembly and word → segment grouping, on hand-made token streams."""

from __future__ import annotations

import itertools

import pytest

from wazo_stt.engine.chunking import fixed_chunks, words_owned
from wazo_stt.engine.segments import build_segments
from wazo_stt.engine.words import MAX_TOKEN_SECONDS, RecognizedWord, assemble_words
from wazo_stt.text_utils import CUE_LINE_CHARS, CUE_MAX_SECONDS, wrap_cue


def test_pieces_join_into_words_with_offsets_and_logprobs():
    words = assemble_words(
        [" bon", "jour", " le", " monde", "."],
        [0.0, 0.16, 0.8, 1.2, 1.44],
        [-0.1, -0.3, -0.2, -0.4, -0.5],
        [1, 2, 3, 4, 5],
        offset=10.0,
        limit=12.0,
    )
    assert [w.word for w in words] == ["bonjour", "le", "monde."]
    assert [w.start for w in words] == [10.0, 10.8, 11.2]
    # A word ends where the next begins, but not later than MAX_TOKEN_SECONDS after its last token.
    assert words[0].end == pytest.approx(10.16 + MAX_TOKEN_SECONDS)
    assert words[1].end == pytest.approx(11.04)
    assert words[2].end == pytest.approx(11.44 + MAX_TOKEN_SECONDS)
    assert words[0].token_ids == [1, 2]
    assert words[2].mean_logprob == pytest.approx(-0.45)


def test_word_end_is_capped_by_the_chunk_limit():
    words = assemble_words([" hi"], [0.96], None, [7], offset=0.0, limit=1.0)
    assert words[0].end == 1.0
    assert words[0].mean_logprob is None


def test_leading_continuation_piece_starts_a_word():
    words = assemble_words(["jour", " x"], [0.0, 0.4], None, [1, 2], offset=0.0, limit=1.0)
    assert [w.word for w in words] == ["jour", "x"]


def _words(spec: list[tuple[str, float, float]]) -> list[RecognizedWord]:
    return [RecognizedWord(text, start, end, [i], [-0.5]) for i, (text, start, end) in enumerate(spec)]


def test_segments_break_at_sentence_end_and_pause():
    words = _words([("Hello", 0.0, 0.4), ("there.", 0.5, 0.9), ("How", 1.0, 1.2), ("are", 1.3, 1.5), ("you", 3.0, 3.3)])
    segments = build_segments(words)
    assert [s.text for s in segments] == ["Hello there.", "How are", "you"]
    assert [s.id for s in segments] == [0, 1, 2]
    assert segments[0].start == 0.0 and segments[0].end == 0.9
    assert segments[0].tokens == [0, 1]
    assert segments[0].avg_logprob == -0.5


def test_segments_respect_cue_length_and_duration():
    words = _words([(f"word{i:02d}", i * 0.3, i * 0.3 + 0.25) for i in range(80)])
    segments = build_segments(words)
    assert len(segments) > 1
    for segment in segments:
        assert len(wrap_cue(segment.text)) <= 2
        assert all(len(line) <= CUE_LINE_CHARS for line in wrap_cue(segment.text))
        assert segment.end - segment.start <= CUE_MAX_SECONDS
    for a, b in itertools.pairwise(segments):
        assert a.end <= b.start
    assert " ".join(s.text for s in segments) == " ".join(w.word for w in words)


def test_fixed_chunks_cover_everything_and_own_each_instant_once():
    sr = 16000
    chunks = fixed_chunks(0, 95 * sr, sr, max_seconds=30, overlap_seconds=2)
    assert chunks[0].start == 0 and chunks[-1].end == 95 * sr
    assert all(c.end - c.start <= 30 * sr for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end  # they overlap
        assert a.keep_until == b.keep_from  # and share the seam exactly
    probe = [RecognizedWord("w", t / 10, t / 10) for t in range(0, 950)]
    owned = [w for c in chunks for w in words_owned(probe, c)]
    assert len(owned) == len(probe)


def test_short_audio_is_one_chunk():
    assert len(fixed_chunks(0, 16000 * 5, 16000, 30, 2)) == 1
