"""From SentencePiece tokens with frame timestamps to words with start and end times.

Parakeet emits pieces such as ``▁bon`` ``jour`` ``.``; onnx-asr turns ``▁`` into a leading space. A piece with a
leading space starts a word, any other piece (a word's continuation, punctuation) extends the current one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# A TDT token carries the frame it was emitted at, not its length: a word is taken to last until the next word
# starts, and at most this long after its last token (the end of a pause is not speech).
MAX_TOKEN_SECONDS = 0.24


@dataclass(slots=True)
class RecognizedWord:
    """A word as the engine sees it: text, times in seconds of the original audio, and its tokens."""

    word: str
    start: float
    end: float
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def mean_logprob(self) -> float | None:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


def join_words(text: str, words: Sequence[RecognizedWord]) -> str:
    """``text`` followed by ``words``, one space between words: the transcript as every format shows it."""
    return " ".join([text, *(w.word for w in words)] if text else [w.word for w in words])


def assemble_words(
    tokens: Sequence[str],
    timestamps: Sequence[float],
    logprobs: Sequence[float] | None,
    token_ids: Sequence[int],
    *,
    offset: float,
    limit: float,
) -> list[RecognizedWord]:
    """Group one chunk's tokens into words; ``offset`` shifts chunk time to audio time, ``limit`` caps ends."""
    words: list[RecognizedWord] = []
    last_token_time = 0.0
    for i, (piece, ts) in enumerate(zip(tokens, timestamps, strict=True)):
        at = offset + float(ts)
        starts_word = piece.startswith(" ") or not words
        text = piece.strip() if starts_word else piece
        if not text and not starts_word:
            continue
        if starts_word:
            if words:
                words[-1].end = min(at, last_token_time + MAX_TOKEN_SECONDS)
            words.append(RecognizedWord(text, at, at))
        else:
            words[-1].word += text
        words[-1].token_ids.append(token_ids[i])
        if logprobs is not None:
            words[-1].logprobs.append(float(logprobs[i]))
        last_token_time = at
    if words:
        words[-1].end = min(limit, last_token_time + MAX_TOKEN_SECONDS)
    for w in words:
        w.end = max(w.end, w.start)
    return [w for w in words if w.word]
