"""Cutting long audio into chunks the encoder handles fast and in flat memory.

Parakeet's attention grows with the square of the input length and one encoder call stops at 400 s, so audio
is never sent in one giant pass. Where chunks must overlap (no pause to cut in), each chunk *owns* the middle of
the overlap on each side and only words that start in what it owns are kept: a word at a seam is kept once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from wazo_stt.engine.words import RecognizedWord


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int  # first sample
    end: int  # one past the last sample
    keep_from: float  # seconds of the original audio: words starting before this belong to the previous chunk
    keep_until: float  # words starting at or after this belong to the next chunk


def fixed_chunks(n_samples: int, sample_rate: int, max_seconds: float, overlap_seconds: float) -> list[Chunk]:
    """Chunks of at most ``max_seconds``, overlapping by ``overlap_seconds``, covering every sample."""
    size = int(max_seconds * sample_rate)
    overlap = min(int(overlap_seconds * sample_rate), size // 2)
    if n_samples <= size:
        return [Chunk(0, n_samples, 0.0, float("inf"))]
    step = size - overlap
    starts = list(range(0, max(n_samples - overlap, 1), step))
    chunks = []
    for i, start in enumerate(starts):
        end = min(start + size, n_samples)
        keep_from = 0.0 if i == 0 else (start + overlap / 2) / sample_rate
        keep_until = float("inf") if i == len(starts) - 1 else (end - overlap / 2) / sample_rate
        chunks.append(Chunk(start, end, keep_from, keep_until))
    return chunks


def words_owned(words: Iterable[RecognizedWord], chunk: Chunk) -> Iterator[RecognizedWord]:
    return (w for w in words if chunk.keep_from <= w.start < chunk.keep_until)
