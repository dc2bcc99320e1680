"""Types shared by every layer.

They live at the bottom of the package so that the engine, the job store and the HTTP layer can all speak
about a transcript without any of them importing another (the engine never imports from ``api``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

# Every engine (Parakeet, Whisper, Silero VAD) takes 16 kHz mono float32; the decoder produces exactly that.
SAMPLE_RATE = 16_000


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class ResponseFormat(StrEnum):
    JSON = "json"
    TEXT = "text"
    SRT = "srt"
    VTT = "vtt"
    VERBOSE_JSON = "verbose_json"


@dataclass(frozen=True, slots=True)
class Word:
    """One word with its position in the original audio, in seconds."""

    word: str
    start: float
    end: float
    # Mean log-probability of the word's tokens; None when the engine gives none.
    logprob: float | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """A readable stretch of transcript (one subtitle cue, one verbose_json segment)."""

    id: int
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True, slots=True)
class Transcript:
    """What an engine produces for one recording, and what the store keeps so every format can be rebuilt."""

    text: str
    language: str
    duration: float
    segments: list[Segment]
    words: list[Word]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        return cls(
            text=data["text"],
            language=data["language"],
            duration=data["duration"],
            segments=[Segment(**s) for s in data["segments"]],
            words=[Word(**w) for w in data["words"]],
        )
