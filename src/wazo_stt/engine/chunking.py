"""Cutting audio into chunks the encoder handles fast and in flat memory.

Parakeet's attention grows with the square of the input length and one encoder call stops at 400 s, so audio
is never sent in one giant pass. With VAD, chunks are speech spans (neighbours joined while short pauses separate
them and the result stays under the bound), and silence is never sent. Speech with no pause to cut in, and all
audio when VAD is off, is cut at the bound with an overlap: each chunk then *owns* up to the middle of the
overlap on each side, and only words that start in what it owns are kept, so a word at a seam is kept once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from wazo_stt.engine.words import RecognizedWord


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int  # first sample
    end: int  # one past the last sample
    keep_from: float = -math.inf  # seconds of the original audio: earlier words belong to the previous chunk
    keep_until: float = math.inf  # words starting at or after this belong to the next chunk


def fixed_chunks(start: int, end: int, sample_rate: int, max_seconds: float, overlap_seconds: float) -> list[Chunk]:
    """Chunks of at most ``max_seconds`` over ``[start, end)``, overlapping by ``overlap_seconds``."""
    size = int(max_seconds * sample_rate)
    if end - start <= size:
        return [Chunk(start, end)]
    overlap = min(int(overlap_seconds * sample_rate), size // 2)
    step = size - overlap
    starts = list(range(start, end - overlap, step))
    chunks = []
    for i, s in enumerate(starts):
        e = min(s + size, end)
        keep_from = -math.inf if i == 0 else (s + overlap / 2) / sample_rate
        keep_until = math.inf if i == len(starts) - 1 else (e - overlap / 2) / sample_rate
        chunks.append(Chunk(s, e, keep_from, keep_until))
    return chunks


def speech_chunks(
    spans: Sequence[tuple[int, int]],
    sample_rate: int,
    max_seconds: float,
    overlap_seconds: float,
    join_gap_seconds: float,
) -> list[Chunk]:
    """Chunks from speech spans: neighbours separated by at most ``join_gap_seconds`` are joined while the result
    fits in ``max_seconds`` (longer context, fewer calls); a span longer than the bound is cut with overlap."""
    limit = int(max_seconds * sample_rate)
    join_gap = int(join_gap_seconds * sample_rate)
    groups: list[list[int]] = []
    for start, end in spans:
        if groups and start - groups[-1][1] <= join_gap and end - groups[-1][0] <= limit:
            groups[-1][1] = end
        else:
            groups.append([start, end])
    chunks: list[Chunk] = []
    for start, end in groups:
        chunks.extend(fixed_chunks(start, end, sample_rate, max_seconds, overlap_seconds))
    return chunks


def words_owned(words: Iterable[RecognizedWord], chunk: Chunk) -> Iterator[RecognizedWord]:
    return (w for w in words if chunk.keep_from <= w.start < chunk.keep_until)
