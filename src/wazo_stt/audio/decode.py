"""Turn whatever a phone system or a browser uploaded into the one shape the engines take.

Voicemails come as G.711 or GSM WAV from PBXs, as Opus in WebM/OGG from browsers, as AAC in M4A from phones,
as MP3 from everywhere. PyAV (FFmpeg inside the wheel) reads all of them, so the engines only ever see 16 kHz
mono float32 samples, and every way an upload can be unusable ends in one :class:`AudioError` whose message
is fit to show the caller (it becomes the HTTP 400 detail).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

from wazo_stt.audio.errors import AudioError, too_long, undecodable, why
from wazo_stt.audio.probe import (
    CODEC_PADDING_S,
    AudioHeader,
    check_sample_rate,
    declared_duration,
    probe_container,
)
from wazo_stt.audio.turns import in_turns
from wazo_stt.domain import SAMPLE_RATE

log = logging.getLogger(__name__)


# Room for the first samples of a file that declares no duration (a browser's WebM), and the most a header is
# trusted with; past them the buffer grows as data arrives.
_UNDECLARED_START_S = 60.0
_LARGEST_START_S = 4 * 3600.0


@dataclass(frozen=True)
class AudioInfo:
    """What an upload is, once checked by decoding it: all a submission keeps."""

    duration: float  # seconds, as decode_audio would give them
    codec: str  # FFmpeg's codec name: "pcm_mulaw", "mp3", "opus"...
    container: str  # FFmpeg's demuxer name: "wav", "ogg", "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2"...
    source_rate: int
    channels: int


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
    with _opened(source) as container:
        header = probe_container(container, max_duration)
        buffer = _SampleBuffer(header.duration)
        try:
            errors: list[str] = []
            buffer.extend(in_turns(_resampled(container, max_duration, errors)))
            samples = buffer.samples()
            samples = samples[: _trimmed_length(samples.size, container.streams.audio[0])]
            peak = _peak(samples) if samples.size else 0.0
            if not np.isfinite(peak):  # a corrupt float WAV; NaN would poison every model output it touches
                np.nan_to_num(samples, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
                peak = _peak(samples)
            _check_decoded(samples.size, header, errors, max_duration)
        except BaseException:
            # Give the memory back now: a refused 4-hour decode must not wait for the garbage collector, and
            # the exception's traceback (which the caller may keep) holds this frame.
            buffer.release()
            raise
    if peak > 1.0:
        # Down-mixing adds channels (identical stereo channels come out 3 dB louder) and the anti-aliasing
        # filter overshoots on full-scale edges; scaling keeps the waveform where clipping would distort it.
        samples /= peak
    return DecodedAudio(
        samples=samples,
        duration=samples.size / SAMPLE_RATE,
        codec=header.codec,
        container=header.container,
        source_rate=header.sample_rate,
        channels=header.channels,
    )


def inspect_audio(source: bytes | str | os.PathLike[str], *, max_duration: float | None = None) -> AudioInfo:
    """Everything decode_audio would check, without keeping the samples: what a submission needs.

    The header is checked first (duration, sample rate, channels: see audio/probe.py), then the stream is
    decoded frame by frame and each frame dropped once counted, so memory stays at one frame whatever the
    length: a 363 KB FLAC of 4 hours of silence costs a few MB here, not the 0.9 GB decode_audio holds.
    The duration is decode_audio's, to the sample, and the same refusals come out.
    """
    with _opened(source) as container:
        header = probe_container(container, max_duration)
        errors: list[str] = []
        size = 0
        for chunk in in_turns(_resampled(container, max_duration, errors)):
            size += chunk.size
        size = _trimmed_length(size, container.streams.audio[0])
        _check_decoded(size, header, errors, max_duration)
    return AudioInfo(
        duration=size / SAMPLE_RATE,
        codec=header.codec,
        container=header.container,
        source_rate=header.sample_rate,
        channels=header.channels,
    )


@contextlib.contextmanager
def _opened(source: bytes | str | os.PathLike[str]) -> Iterator[av.container.InputContainer]:
    """The source opened by FFmpeg, closed on the way out; FFmpeg's own failures become AudioError."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, bytes):
            if not source:
                raise AudioError("empty", "The audio file is empty")
            file: BinaryIO | _NamelessFile = io.BytesIO(source)
        else:
            opened = stack.enter_context(open(source, "rb"))
            if os.fstat(opened.fileno()).st_size == 0:
                raise AudioError("empty", "The audio file is empty")
            file = _NamelessFile(opened)
        try:
            # Tags are not needed, and PBXs write Latin-1 into WAV INFO chunks: strict UTF-8 would refuse them.
            container = av.open(file, mode="r", metadata_errors="replace")
        except av.FFmpegError as exc:
            raise undecodable(f"not a recognised audio format ({why(exc)})") from None
        stack.callback(container.close)
        try:
            yield container
        except av.FFmpegError as exc:  # the resampler or the container failing past the per-packet guards
            raise undecodable(why(exc)) from None


def _resampled(
    container: av.container.InputContainer, max_duration: float | None, errors: list[str]
) -> Iterator[np.ndarray]:
    """The audio stream as 16 kHz mono float32 pieces, stopping as soon as it is longer than `max_duration`.

    The decoded length is counted whatever the header said: a header may claim 10 s for 4 hours of data.
    """
    stream = container.streams.audio[0]
    resampler: av.AudioResampler | None = None
    resampler_input: tuple[str, str, int] | None = None
    decoded_seconds = 0.0
    for frame in _frames(container, stream, errors):
        check_sample_rate(frame.sample_rate)
        decoded_seconds += frame.samples / frame.sample_rate
        if max_duration is not None and decoded_seconds > max_duration + CODEC_PADDING_S:
            declared = declared_duration(container, stream)
            raise too_long(declared if declared and declared > max_duration else None, max_duration)
        # PyAV's resampler refuses a frame unlike its first; a stream can change rate or layout midway
        # (concatenated MP3s), so finish the old one, keeping its tail, and start again.
        frame_input = (frame.format.name, frame.layout.name, frame.sample_rate)
        if resampler is None or frame_input != resampler_input:
            if resampler is not None:
                yield from (f.to_ndarray()[0] for f in resampler.resample(None))
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            resampler_input = frame_input
        yield from (f.to_ndarray()[0] for f in resampler.resample(frame))
    if resampler is not None:
        yield from (f.to_ndarray()[0] for f in resampler.resample(None))  # the filter's delayed tail


def _check_decoded(size: int, header: AudioHeader, errors: list[str], max_duration: float | None) -> None:
    """Refuse what decoded to nothing or too much. Silence is not refused: its transcript is empty."""
    if not size:
        if errors:
            raise undecodable(f"the {header.codec} data is damaged ({errors[0]})")
        raise AudioError("empty", "The audio file contains no audio samples")
    if errors:
        log.warning("Skipped %d damaged %s packet(s): %s", len(errors), header.codec, errors[0])
    duration = size / SAMPLE_RATE
    if max_duration is not None and duration > max_duration:
        raise too_long(duration, max_duration)


class _SampleBuffer:
    """The decoded samples, written into one array as they come.

    Collecting frames in a list and joining them at the end holds the recording twice at the peak (460 MB for
    an hour of audio). Here the array is sized from the duration the file declares and resized in place:
    NumPy reallocates, and for arrays this large the allocator remaps pages rather than copying them.
    """

    def __init__(self, declared_seconds: float | None) -> None:
        expected = declared_seconds + CODEC_PADDING_S + 1.0 if declared_seconds else _UNDECLARED_START_S
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

    def release(self) -> None:
        """Free the memory now, whoever still holds this buffer."""
        self._data = np.empty(0, dtype=np.float32)
        self._size = 0

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
            errors.append(why(exc))
            continue
        yield from frames


def _trimmed_length(size: int, stream: av.AudioStream) -> int:
    """Drop the encoder's padding past the stream's declared end (AAC decodes whole 1024-sample frames).

    Only a small excess is trusted to be padding: a header claiming much less than the data holds is wrong,
    and the data wins.
    """
    if stream.duration is None or stream.time_base is None:
        return size
    end = round(float(stream.duration * stream.time_base) * SAMPLE_RATE)
    if 0 < end < size <= end + CODEC_PADDING_S * SAMPLE_RATE:
        return end
    return size


def _peak(samples: np.ndarray) -> float:
    """The largest magnitude, without np.abs's copy of a recording that may be 4 hours (900 MB) long."""
    return float(max(samples.max(), -samples.min()))
