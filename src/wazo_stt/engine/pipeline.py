"""The engine every model family shares: find speech, cut chunks, recognise each, stitch words, build segments."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np

from wazo_stt.domain import SAMPLE_RATE, Transcript, Word
from wazo_stt.engine.base import ChunkRecognizer
from wazo_stt.engine.chunking import Chunk, fixed_chunks, speech_chunks, words_owned
from wazo_stt.engine.language import detect_language
from wazo_stt.engine.parallel import InferenceSlots, in_order
from wazo_stt.engine.segments import build_segments
from wazo_stt.engine.vad import SpeechDetector
from wazo_stt.engine.words import RecognizedWord, join_words

log = logging.getLogger(__name__)

# A peak under 2**-9 (-54 dBFS, 64 steps of 16-bit) is a codec's idea of silence, not a voice: digital zeros
# decode to 0, but A-law's quietest code is +/-8 steps and a GSM "silent" frame decodes to +/-32 steps. Such a
# recording never reaches the model (Whisper would hallucinate a "you" into it): its transcript is empty.
SILENCE_PEAK = 2.0**-9

# Called from the transcription thread after each chunk: the fraction of the speech recognised, and the text
# recognised so far (it only ever grows by appending, so a streaming client can send the difference).
ProgressCallback = Callable[[float, str], None]

# Shorter chunks are padded with silence: a single sample crashed the recogniser's feature extraction, and a
# few ms made its per-feature variance a division by zero (NaN features). A quarter second is a short word.
MIN_CHUNK_SAMPLES = SAMPLE_RATE // 4
# Of a pause between speech spans sent in one chunk, this much is sent (on top of the VAD's padding on each side);
# the rest is left out. Measured in docs/benchmarks.md ("speech sent") with the WER guard of docs/fidelity.md.
KEPT_PAUSE_SECONDS = 0.0


class ChunkPlanner:
    """Decides which stretches of the audio reach the recogniser."""

    def __init__(
        self,
        detector: SpeechDetector | None,
        *,
        max_seconds: float = 30.0,
        overlap_seconds: float = 2.0,
        join_gap_seconds: float = 1.0,
        kept_pause_seconds: float = KEPT_PAUSE_SECONDS,
    ) -> None:
        self.detector = detector
        self.max_seconds = max_seconds
        self.overlap_seconds = overlap_seconds
        self.join_gap_seconds = join_gap_seconds
        self.kept_pause_seconds = kept_pause_seconds

    def plan(self, audio: np.ndarray) -> list[Chunk]:
        # max and min rather than abs: no temporary copy of hours of samples.
        if not audio.size or max(float(audio.max()), -float(audio.min())) < SILENCE_PEAK:
            return []
        if self.detector is None:
            return fixed_chunks(0, len(audio), SAMPLE_RATE, self.max_seconds, self.overlap_seconds)
        spans = self.detector.speech_spans(audio)
        return speech_chunks(
            spans, SAMPLE_RATE, self.max_seconds, self.overlap_seconds, self.join_gap_seconds, self.kept_pause_seconds
        )


class ChunkedEngine:
    """An ``Engine`` made of a planner and a model's ``ChunkRecognizer``.

    ``slots``: the process's inference count, shared by every job: with it, a chunk may be recognised while the
    one before it still is (engine/parallel.py). Only for recognisers that run two calls at once faster than one.
    """

    def __init__(self, recognizer: ChunkRecognizer, planner: ChunkPlanner, slots: InferenceSlots | None = None):
        self.recognizer = recognizer
        self.planner = planner
        self.slots = slots
        self.model_id = recognizer.model_id
        self.owned_by = recognizer.owned_by
        self.languages = recognizer.languages

    def transcribe(
        self, audio: np.ndarray, language: str | None, progress: ProgressCallback | None = None
    ) -> Transcript:
        chunks = self.planner.plan(audio)
        words = self._recognize(audio, chunks, language, progress)
        sent = sum(c.samples for c in chunks) / SAMPLE_RATE
        log.debug(
            "%s: %d chunks, %.1f s of %.1f s sent to the model",
            self.model_id,
            len(chunks),
            sent,
            len(audio) / SAMPLE_RATE,
        )
        text = join_words("", words)
        label = self.recognizer.language_label(language)
        if label == "auto":  # the model does not say which language it heard: read it from the text
            label = detect_language(text, self.languages) or label
        return Transcript(
            text=text,
            language=label,
            duration=round(len(audio) / SAMPLE_RATE, 3),
            segments=build_segments(words),
            words=[Word(w.word, round(w.start, 3), round(w.end, 3), w.mean_logprob) for w in words],
        )

    def _recognize(
        self,
        audio: np.ndarray,
        chunks: Sequence[Chunk],
        language: str | None,
        progress: ProgressCallback | None,
    ) -> list[RecognizedWord]:
        def recognize(chunk: Chunk) -> list[RecognizedWord]:
            piece = chunk.audio(audio)
            if piece.size < MIN_CHUNK_SAMPLES:
                piece = np.pad(piece, (0, MIN_CHUNK_SAMPLES - piece.size))
            chunk_words = self.recognizer.recognize(piece, language)
            for word in chunk_words:
                word.start, word.end = chunk.word_to_original(word.start, word.end, SAMPLE_RATE)
            return list(words_owned(chunk_words, chunk))

        words: list[RecognizedWord] = []
        # Progress in audio sent to the model, not in chunks: chunks range from a second to the bound.
        total = sum(c.samples for c in chunks)
        done = 0
        text = ""
        for chunk, owned in zip(chunks, in_order(recognize, chunks, self.slots), strict=True):
            words.extend(owned)
            done += chunk.samples
            if progress is not None:
                text = join_words(text, owned)
                progress(done / total, text)
        # A word kept from one overlapping chunk must not run into the first word kept from the next.
        for word, following in pairwise(words):
            word.end = max(word.start, min(word.end, following.start))
        return words
