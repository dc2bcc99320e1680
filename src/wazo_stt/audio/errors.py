"""The one error every unusable upload ends in, with messages fit to show the caller."""

from __future__ import annotations

import av


class AudioError(ValueError):
    """Input that is not usable audio. `reason` is one of: "undecodable", "empty", "too_long".

    Silence is not an error: a caller who hung up left a voicemail whose transcript is empty.

    A ValueError because it is the caller's input that is wrong; `reason` lets the API layer pick a status
    and metrics label without parsing the message, and the message is safe to send back verbatim.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def undecodable(reason: str) -> AudioError:
    return AudioError("undecodable", f"Could not decode the audio: {reason}")


def too_long(duration: float | None, limit: float) -> AudioError:
    """Name both lengths in words and the limit's setting, so the caller knows what to cut and by how much."""
    length = _human(duration) if duration is not None else None
    # "4h 0m long; the limit is 4h 0m" would read as a contradiction: say "longer than" then.
    length = f"is {length} long" if length not in (None, _human(limit)) else f"is longer than {_human(limit)}"
    return AudioError(
        "too_long",
        f"Audio {length}; the limit is {_human(limit)} (MAX_AUDIO_DURATION_SECS={limit:g})",
    )


def _human(seconds: float) -> str:
    """4h 10m, 12m 30s, 45.5s: how a person says a recording's length."""
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h", f"{minutes}m"] if hours else [f"{minutes}m"]
    if secs:
        parts.append(f"{secs}s")
    return " ".join(parts)


def why(exc: av.FFmpegError) -> str:
    """FFmpeg's reason without the errno or the file name ("Invalid data found when processing input")."""
    return exc.strerror or type(exc).__name__
