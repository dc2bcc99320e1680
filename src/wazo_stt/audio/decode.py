"""Turn whatever a phone system or a browser uploaded into the one shape the engines take.

Voicemails come as G.711 or GSM WAV from PBXs, as Opus in WebM/OGG from browsers, as AAC in M4A from phones,
as MP3 from everywhere. PyAV (FFmpeg inside the wheel) reads all of them, so the engines only ever see 16 kHz
mono float32 samples, and every way an upload can be unusable ends in one :class:`AudioError` whose message
is fit to show the caller (it becomes the HTTP 400 detail).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

from wazo_stt.domain import SAMPLE_RATE

log = logging.getLogger(__name__)

# A peak under 2**-9 (-54 dBFS, 64 steps of 16-bit) is a codec's idea of silence, not a voice: digital zeros
# decode to 0, but A-law's quietest code is +/-8 steps and a GSM "silent" frame decodes to +/-32 steps.
_SILENCE_PEAK = 2.0**-9

# Codecs pad a stream's start and end (AAC ends on a whole 1024-sample frame, Opus pre-skips 80 ms), so
# container durations and decoded lengths disagree by up to this much without anything being wrong.
_CODEC_PADDING_S = 0.25

# No real recording is sampled faster (DXD is 352.8 kHz). A header claiming more is damage or an attack: the
# resampler's filter grows with the input rate, and a 16 KB WAV claiming 740 MHz took 5 s of CPU to refuse.
_MAX_SAMPLE_RATE = 768_000
# Room for the first samples of a file that declares no duration (a browser's WebM), and the most a header is
# trusted with; past them the buffer grows as data arrives.
_UNDECLARED_START_S = 60.0
_LARGEST_START_S = 4 * 3600.0


class AudioError(ValueError):
    """Input that is not usable audio. `reason` is one of: "undecodable", "empty", "silent", "too_long".

    A ValueError because it is the caller's input that is wrong; `reason` lets the API layer pick a status
    and metrics label without parsing the message, and the message is safe to send back verbatim.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class DecodedAudio:
    """Samples ready for an engine, plus what the upload was, for logs and for verbose responses."""

    samples: np.ndarray  # float32, mono, 16 kHz, values in [-1, 1]
    duration: float  # seconds of the original stream (== len(samples) / SAMPLE_RATE)
    codec: str  # FFmpeg's codec name: "pcm_mulaw", "mp3", "opus"...
    container: str  # FFmpeg's demuxer name: "wav", "ogg", "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2"...
    source_rate: int
    channels: int


class _NamelessFile:
    """A file's read/seek/tell without its name.

    FFmpeg scores a file's extension when probing, so given `upload.ul` it would decode any bytes as raw
    mu-law; hiding the name makes the format come from the bytes alone, as it does for uploads in memory.
    """

    def __init__(self, file: BinaryIO) -> None:
        self.read = file.read
        self.seek = file.seek
        self.tell = file.tell


def decode_audio(source: bytes | str | os.PathLike[str], *, max_duration: float | None = None) -> DecodedAudio:
    """Decode `source` (the file's bytes, or a path to it) to 16 kHz mono float32.

    Damaged packets are skipped, as ffmpeg does, so a truncated or partly corrupt recording still gives what
    it holds. With `max_duration` (seconds), decoding stops as soon as the audio is known to be longer, so a
    ten-hour upload is refused in the time it takes to read its header (or its first `max_duration`).

    Raises AudioError for anything that is not usable audio; a missing path raises OSError as usual, since
    that is the server's mistake, not the caller's.
    """
    if isinstance(source, bytes):
        if not source:
            raise AudioError("empty", "The audio file is empty")
        return _decode_file(io.BytesIO(source), max_duration)
    with open(source, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            raise AudioError("empty", "The audio file is empty")
        return _decode_file(_NamelessFile(file), max_duration)


def _decode_file(file: BinaryIO | _NamelessFile, max_duration: float | None) -> DecodedAudio:
    try:
        # Tags are not needed, and PBXs write Latin-1 into WAV INFO chunks: strict UTF-8 would refuse the file.
        container = av.open(file, mode="r", metadata_errors="replace")
    except av.FFmpegError as exc:
        raise _undecodable(f"not a recognised audio format ({_why(exc)})") from None
    try:
        return _decode_container(container, max_duration)
    except av.FFmpegError as exc:  # the resampler or the container failing past the per-packet guards
        raise _undecodable(_why(exc)) from None
    finally:
        container.close()


def _decode_container(container: av.container.InputContainer, max_duration: float | None) -> DecodedAudio:
    if not container.streams.audio:
        raise _undecodable("the file has no audio stream")
    stream = container.streams.audio[0]
    if stream.codec_context is None:
        raise _undecodable("no decoder for this audio codec")
    codec = stream.codec_context.codec.canonical_name  # "mp3", not the decoder's "mp3float"
    declared = _declared_duration(container, stream)

    if max_duration is not None and declared is not None and declared > max_duration + _CODEC_PADDING_S:
        raise _too_long(declared, max_duration)

    errors: list[str] = []
    buffer = _SampleBuffer(declared)
    resampler: av.AudioResampler | None = None
    resampler_input: tuple[str, str, int] | None = None
    source_rate = channels = 0
    decoded_seconds = 0.0
    for frame in _frames(container, stream, errors):
        if not 0 < frame.sample_rate <= _MAX_SAMPLE_RATE:
            raise _undecodable(f"implausible sample rate ({frame.sample_rate} Hz)")
        if not source_rate:
            source_rate, channels = frame.sample_rate, frame.layout.nb_channels
        decoded_seconds += frame.samples / frame.sample_rate
        if max_duration is not None and decoded_seconds > max_duration + _CODEC_PADDING_S:
            raise _too_long(declared if declared and declared > max_duration else None, max_duration)
        # PyAV's resampler refuses a frame unlike its first; a stream can change rate or layout midway
        # (concatenated MP3s), so finish the old one, keeping its tail, and start again.
        frame_input = (frame.format.name, frame.layout.name, frame.sample_rate)
        if resampler is None or frame_input != resampler_input:
            if resampler is not None:
                buffer.extend(f.to_ndarray()[0] for f in resampler.resample(None))
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            resampler_input = frame_input
        buffer.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
    if resampler is not None:
        buffer.extend(f.to_ndarray()[0] for f in resampler.resample(None))  # the filter's delayed tail

    samples = buffer.samples()
    if not samples.size:
        if errors:
            raise _undecodable(f"the {codec} data is damaged ({errors[0]})")
        raise AudioError("empty", "The audio file contains no audio samples")
    if errors:
        log.warning("Skipped %d damaged %s packet(s): %s", len(errors), codec, errors[0])
    samples = _trim_padding(samples, stream)
    duration = samples.size / SAMPLE_RATE
    if max_duration is not None and duration > max_duration:
        raise _too_long(duration, max_duration)

    peak = _peak(samples)
    if not np.isfinite(peak):  # a corrupt float WAV; NaN would poison every model output it touches
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        peak = _peak(samples)
    if peak < _SILENCE_PEAK:
        raise AudioError("silent", "The audio contains only silence")
    if peak > 1.0:
        # Down-mixing adds channels (identical stereo channels come out 3 dB louder) and the anti-aliasing
        # filter overshoots on full-scale edges; scaling keeps the waveform where clipping would distort it.
        samples /= peak

    return DecodedAudio(
        samples=samples,
        duration=duration,
        codec=codec,
        container=container.format.name,
        source_rate=source_rate,
        channels=channels,
    )


class _SampleBuffer:
    """The decoded samples, written into one array as they come.

    Collecting frames in a list and joining them at the end holds the recording twice at the peak (460 MB for
    an hour of audio). Here the array is sized from the duration the file declares and resized in place:
    NumPy reallocates, and for arrays this large the allocator remaps pages rather than copying them.
    """

    def __init__(self, declared_seconds: float | None) -> None:
        expected = declared_seconds + _CODEC_PADDING_S + 1.0 if declared_seconds else _UNDECLARED_START_S
        # Pages of an np.empty are only taken when written: a header claiming too much costs address space.
        self._data = np.empty(round(min(expected, _LARGEST_START_S) * SAMPLE_RATE), dtype=np.float32)
        self._size = 0

    def extend(self, arrays: Iterable[np.ndarray]) -> None:
        for array in arrays:
            end = self._size + array.size
            if end > self._data.size:
                self._data.resize(max(end, int(self._data.size * 1.5)), refcheck=False)
            self._data[self._size : end] = array
            self._size = end

    def samples(self) -> np.ndarray:
        """The samples, the unused capacity given back."""
        self._data.resize(self._size, refcheck=False)
        return self._data


def _frames(
    container: av.container.InputContainer, stream: av.AudioStream, errors: list[str]
) -> Iterator[av.AudioFrame]:
    """Yield every frame that decodes, skipping packets that do not, as ffmpeg does.

    A damaged packet costs its own few milliseconds instead of the whole recording. Each failure's reason
    goes to `errors`, to explain a file that gave nothing. The demuxers themselves do not fail on damage
    (they resynchronise, or stop as at the end of the file), and the last packets PyAV yields are empty
    ones that flush the decoder.
    """
    for packet in container.demux(stream):
        try:
            frames = stream.decode(packet)
        except av.FFmpegError as exc:
            errors.append(_why(exc))
            continue
        yield from frames


def _declared_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The duration the file claims, in seconds, or None (a browser's streamed WebM claims none)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _trim_padding(samples: np.ndarray, stream: av.AudioStream) -> np.ndarray:
    """Drop the encoder's padding past the stream's declared end (AAC decodes whole 1024-sample frames).

    Only a small excess is trusted to be padding: a header claiming much less than the data holds is wrong,
    and the data wins.
    """
    if stream.duration is None or stream.time_base is None:
        return samples
    end = round(float(stream.duration * stream.time_base) * SAMPLE_RATE)
    if 0 < end < samples.size <= end + _CODEC_PADDING_S * SAMPLE_RATE:
        return samples[:end]
    return samples


def _peak(samples: np.ndarray) -> float:
    """The largest magnitude, without np.abs's copy of a recording that may be 4 hours (900 MB) long."""
    return float(max(samples.max(), -samples.min()))


def _undecodable(reason: str) -> AudioError:
    return AudioError("undecodable", f"Could not decode the audio: {reason}")


def _too_long(duration: float | None, limit: float) -> AudioError:
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


def _why(exc: av.FFmpegError) -> str:
    """FFmpeg's reason without the errno or the file name ("Invalid data found when processing input")."""
    return exc.strerror or type(exc).__name__
