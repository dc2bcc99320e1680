"""One transcript, five shapes, exactly as OpenAI's transcription endpoint returns them."""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from wazo_stt.domain import ResponseFormat, Segment, Transcript
from wazo_stt.formats.languages import language_name
from wazo_stt.formats.subtitles import to_srt, to_vtt


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str | dict[str, Any]  # a dict is sent as JSON, a str as text
    media_type: str


def render(
    transcript: Transcript,
    response_format: ResponseFormat | str,
    granularities: Collection[str] = (),
    *,
    logprobs: bool = False,
) -> Rendered:
    """``logprobs`` (OpenAI's ``include[]=logprobs``) adds one log-probability per word to ``json``."""
    fmt = ResponseFormat(response_format)
    if fmt is ResponseFormat.JSON:
        body: dict[str, Any] = {"text": transcript.text, "usage": usage(transcript.duration)}
        if logprobs:
            body["logprobs"] = word_logprobs(transcript)
        return Rendered(body, "application/json")
    if fmt is ResponseFormat.TEXT:
        return Rendered(transcript.text + "\n", "text/plain; charset=utf-8")
    if fmt is ResponseFormat.SRT:
        return Rendered(to_srt(transcript.segments), "text/plain; charset=utf-8")
    if fmt is ResponseFormat.VTT:
        return Rendered(to_vtt(transcript.segments), "text/plain; charset=utf-8")
    return Rendered(_verbose(transcript, granularities), "application/json")


def usage(duration: float) -> dict[str, Any]:
    """OpenAI's usage object for models billed by audio duration: whole seconds, rounded up as OpenAI bills."""
    return {"type": "duration", "seconds": math.ceil(duration)}


def word_logprobs(transcript: Transcript) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs`` list, one entry per word: the mean log-probability of the word's tokens (what the
    stored transcript keeps), with the word's UTF-8 bytes. Words the engine gave no probability for are left out."""
    return [
        {"token": w.word, "bytes": list(w.word.encode("utf-8")), "logprob": w.logprob}
        for w in transcript.words
        if w.logprob is not None
    ]


def _verbose(transcript: Transcript, granularities: Collection[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language_name(transcript.language),
        "duration": transcript.duration,
        "text": transcript.text,
    }
    # As OpenAI does: segments unless only word timestamps were asked for.
    if "segment" in granularities or "word" not in granularities:
        body["segments"] = [_openai_segment(s) for s in transcript.segments]
    if "word" in granularities:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in transcript.words]
    body["usage"] = usage(transcript.duration)
    return body


def _openai_segment(segment: Segment) -> dict[str, Any]:
    # Parakeet decodes greedily in one pass: there is no temperature fallback (0.0), no seek window (chunks are
    # cut by the engine, so seek is the segment start in centiseconds like Whisper's frame offset), and no
    # compression-ratio check; no_speech_prob is 0 because silence never reaches the decoder.
    return {
        "id": segment.id,
        "seek": int(segment.start * 100),
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": segment.tokens,
        "temperature": 0.0,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": _compression_ratio(segment.text),
        "no_speech_prob": segment.no_speech_prob,
    }


def _compression_ratio(text: str) -> float:
    """Same measure Whisper reports (text length over its zlib-compressed length): high values flag loops."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0
