"""Cutting audio into chunks the encoder handles fast and in flat memory.

Parakeet's attention grows with the square of the input length and one encoder call stops at 400 s, so audio
is never sent in one giant pass. With VAD, a chunk is a run of speech spans sent *back to back*: the pauses
between them are cut down to ``kept_pause_seconds`` (the VAD's padding already leaves a natural pause on each
side), so the encoder gets the context of neighbouring phrases without paying for the silence between them.
Word times are mapped back through the pieces to seconds of the original audio. Speech with no pause to cut in,
and all audio when VAD is off, is cut at the bound with an overlap: each chunk then *owns* up to the middle of
the overlap on each side, and only words that start in what it owns are kept, so a word at a seam is kept once.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from wazo_stt.engine.words import RecognizedWord


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int  # first sample
    end: int  # one past the last sample
    keep_from: float = -math.inf  # seconds of the original audio: earlier words belong to the previous chunk
    keep_until: float = math.inf  # words starting at or after this belong to the next chunk
    # The sample ranges sent back to back, when the chunk leaves pauses out (empty: all of [start, end)).
    pieces: tuple[tuple[int, int], ...] = ()

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return self.pieces or ((self.start, self.end),)

    @property
    def samples(self) -> int:
        """How many samples reach the model."""
        return sum(end - start for start, end in self.spans)

    def audio(self, audio: np.ndarray) -> np.ndarray:
        """What the model gets: the pieces of ``audio``, concatenated (a view when there is one piece)."""
        if not self.pieces:
            return audio[self.start : self.end]
        return np.concatenate([audio[start:end] for start, end in self.pieces])

    def to_original(self, seconds: float, sample_rate: int) -> float:
        """Seconds into the chunk -> seconds of the original audio (before the first or after the last piece:
        extrapolated from that piece, as for a chunk of one piece)."""
        index, position = self._locate(seconds * sample_rate, bisect_right)
        return (self.spans[index][0] + position) / sample_rate

    def word_to_original(self, start: float, end: float, sample_rate: int) -> tuple[float, float]:
        """A word's times in the chunk -> in the original audio. A word cannot span a pause that was left out:
        one that starts in a piece and ends in the next ends where its piece ends (a word's end runs on into
        what follows; mapped naively, it would span the left-out pause, seconds long: docs/fidelity.md). Its
        start is trusted: Parakeet's are frame-exact, and Whisper keeps enough of each pause for its own."""
        first, start_in = self._locate(start * sample_rate, bisect_right)
        last, end_in = self._locate(end * sample_rate, bisect_left)  # a word ending at a cut ends before it
        mapped_start = self.spans[first][0] + start_in
        mapped_end = self.spans[first][1] if last > first else self.spans[last][0] + end_in
        return mapped_start / sample_rate, max(mapped_start, mapped_end) / sample_rate

    def _locate(self, position: float, bisect: Callable[[list[int], float], int]) -> tuple[int, float]:
        """The piece holding chunk sample ``position``, and the position within that piece."""
        offsets = list(accumulate((end - start for start, end in self.spans), initial=0))
        index = min(max(bisect(offsets, position) - 1, 0), len(self.spans) - 1)
        return index, position - offsets[index]


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
    kept_pause_seconds: float = math.inf,
) -> list[Chunk]:
    """Chunks from speech spans: neighbours separated by at most ``join_gap_seconds`` are joined while what is
    sent fits in ``max_seconds`` (longer context, fewer calls); of a pause between joined spans only
    ``kept_pause_seconds`` is sent (half after the first, half before the second; ``inf``: all of it). A span
    longer than the bound is cut with overlap."""
    limit = int(max_seconds * sample_rate)
    join_gap = int(join_gap_seconds * sample_rate)
    kept_pause = limit if math.isinf(kept_pause_seconds) else int(kept_pause_seconds * sample_rate)
    groups: list[list[list[int]]] = []  # each group: its pieces [start, end], pauses already trimmed
    sizes: list[int] = []  # samples sent per group
    for start, end in spans:
        if groups:
            last = groups[-1][-1]
            gap = start - last[1]
            added = end - start + min(gap, kept_pause)
            if gap <= join_gap and sizes[-1] + added <= limit:
                sizes[-1] += added
                if gap <= kept_pause:
                    last[1] = end
                else:
                    half = kept_pause // 2
                    last[1] += half
                    groups[-1].append([start - (kept_pause - half), end])
                continue
        groups.append([[start, end]])
        sizes.append(end - start)
    chunks: list[Chunk] = []
    for pieces in groups:
        if len(pieces) == 1:
            chunks.extend(fixed_chunks(pieces[0][0], pieces[0][1], sample_rate, max_seconds, overlap_seconds))
        else:
            chunks.append(Chunk(pieces[0][0], pieces[-1][1], pieces=tuple((s, e) for s, e in pieces)))
    return chunks


def words_owned(words: Iterable[RecognizedWord], chunk: Chunk) -> Iterator[RecognizedWord]:
    return (w for w in words if chunk.keep_from <= w.start < chunk.keep_until)
