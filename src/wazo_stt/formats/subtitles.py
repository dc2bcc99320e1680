"""SRT and WebVTT writers. Cue boundaries come from the segmenter; here they are only timed and wrapped."""

from __future__ import annotations

from collections.abc import Sequence

from wazo_stt.domain import Segment
from wazo_stt.text_utils import wrap_cue


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(segments: Sequence[Segment]) -> list[tuple[float, float, str]]:
    cues = []
    for segment in segments:
        text = segment.text.strip()
        if not text:
            continue
        # A cue needs a visible duration even for a single short word.
        end = max(segment.end, segment.start + 0.2)
        cues.append((segment.start, end, "\n".join(wrap_cue(text))))
    # Never let a cue run into the next one (the minimum duration above could make it).
    for i in range(len(cues) - 1):
        start, end, text = cues[i]
        cues[i] = (start, min(end, cues[i + 1][0]), text)
    return cues


def to_srt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{i}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n"
        for i, (start, end, text) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment]) -> str:
    blocks = [f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n" for start, end, text in _cues(segments)]
    return "WEBVTT\n\n" + "\n".join(blocks)
