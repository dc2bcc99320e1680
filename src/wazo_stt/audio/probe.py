"""What an upload's headers claim, checked against policy before a single packet is decoded.

Opening a container reads only its headers (and, for formats without one, the first packets), so a file
that declares 10 hours, a 1 Hz sample rate or 200 channels is refused in microseconds whatever its size.
The decoder still counts what it really decodes (audio/decode.py): headers can lie in the other direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import av

from wazo_stt.audio.errors import AudioError, too_long, undecodable

# Codecs pad a stream's start and end (AAC ends on a whole 1024-sample frame, Opus pre-skips 80 ms), so
# container durations and decoded lengths disagree by up to this much without anything being wrong.
CODEC_PADDING_S = 0.25

# Telephony's narrowband is 8 kHz; nothing meant for a listener is sampled below 4 kHz (2 kHz of bandwidth).
# A lower rate is damage or an attack: a 16 KB WAV declaring 1 Hz passed for 2 h 13 min of audio.
MIN_SAMPLE_RATE = 4_000
# No real recording is sampled faster (DXD is 352.8 kHz). A header claiming more is damage or an attack: the
# resampler's filter grows with the input rate, and a 16 KB WAV claiming 740 MHz took 5 s of CPU to refuse.
MAX_SAMPLE_RATE = 768_000
# Third-order ambisonics is 16 channels; FFmpeg's own layouts stop at 64. Each channel is decoded and mixed.
MAX_CHANNELS = 64


@dataclass(frozen=True)
class AudioHeader:
    """What the container and its first audio stream declare."""

    codec: str  # FFmpeg's codec name: "pcm_mulaw", "mp3", "opus"...
    container: str  # FFmpeg's demuxer name: "wav", "ogg", "matroska,webm"...
    duration: float | None  # seconds; None when the file does not say (a browser's streamed WebM)
    sample_rate: int  # 0 when the header does not say (then the first frame's rate is checked)
    channels: int


def probe_container(container: av.container.InputContainer, max_duration: float | None) -> AudioHeader:
    """The first audio stream's header, refused with an AudioError where it is out of policy."""
    if not container.streams.audio:
        raise undecodable("the file has no audio stream")
    stream = container.streams.audio[0]
    if stream.codec_context is None:
        raise undecodable("no decoder for this audio codec")
    context = stream.codec_context
    header = AudioHeader(
        codec=context.codec.canonical_name,  # "mp3", not the decoder's "mp3float"
        container=container.format.name,
        duration=declared_duration(container, stream),
        sample_rate=context.sample_rate or 0,
        channels=context.channels or 0,
    )
    # The length first: it is what the caller most needs to hear about (and 10 Hz files are mostly "long").
    if max_duration is not None and header.duration is not None and header.duration > max_duration + CODEC_PADDING_S:
        raise too_long(header.duration, max_duration)
    if header.sample_rate:
        check_sample_rate(header.sample_rate)
    if header.channels > MAX_CHANNELS:
        raise AudioError(
            "undecodable", f"Could not decode the audio: {header.channels} channels (at most {MAX_CHANNELS})"
        )
    return header


def check_sample_rate(rate: int) -> None:
    """Refuse a rate no recording has: checked on the header, then on every decoded frame."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise undecodable(f"implausible sample rate ({rate} Hz); accepted: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")


def declared_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The duration the file claims, in seconds, or None (a browser's streamed WebM claims none)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None
