"""Audio fixtures made at test time from a signal whose every property can be checked after decoding.

The signal is a 1 kHz tone with a short loud click at a known time: the tone's frequency shows that resampling
kept the pitch, the click's onset shows that nothing shifted the timeline (encoder delay, priming samples),
and the length shows that nothing was lost or padded. PyAV's own encoders write most formats, so the tests
need nothing from Debian; only GSM (and libvorbis, for comparison) need `sox`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

DURATION = 2.0
TONE_HZ = 1000.0
TONE_AMPLITUDE = 0.25
CLICK_AT = 0.5
# Loud enough that only the click crosses CLICK_THRESHOLD, long enough (2 ms) to survive an 8 kHz codec.
CLICK_SECONDS = 0.002
CLICK_AMPLITUDE = 0.9
CLICK_THRESHOLD = 0.6


def tone_with_click(rate: int, duration: float = DURATION, tone_hz: float = TONE_HZ) -> np.ndarray:
    """float32 mono: the tone, replaced by a flat CLICK_AMPLITUDE pulse from CLICK_AT for CLICK_SECONDS."""
    t = np.arange(round(duration * rate)) / rate
    signal = TONE_AMPLITUDE * np.sin(2 * np.pi * tone_hz * t)
    start = round(CLICK_AT * rate)
    signal[start : start + round(CLICK_SECONDS * rate)] = CLICK_AMPLITUDE
    return signal.astype(np.float32)


def sine(rate: int, duration: float, hz: float, amplitude: float) -> np.ndarray:
    t = np.arange(round(duration * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV; `samples` is (n,) for mono or (n, channels), floats in [-1, 1]."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    path.write_bytes(wav_bytes(samples, rate))
    return path


def encoded(
    samples: np.ndarray,
    rate: int,
    codec: str,
    container: str,
    *,
    layout: str = "mono",
    options: dict[str, str] | None = None,
) -> bytes:
    """Mono float32 `samples` encoded by PyAV, as ffmpeg would.

    The frame carries real timestamps: from them the AAC encoder's 1024 priming samples reach the MP4 muxer,
    which writes the edit list that tells decoders to drop them (without it the audio starts 23-64 ms late).
    """
    buffer = io.BytesIO()
    _encode_to(buffer, samples, rate, codec, container, layout=layout, options=options)
    return buffer.getvalue()


def write_faststart_m4a(path: Path, samples: np.ndarray, rate: int) -> Path:
    """AAC in M4A with its index (moov) first, as phones write it; the muxer must reopen a real file."""
    _encode_to(str(path), samples, rate, "aac", "ipod", container_options={"movflags": "faststart"})
    return path


def streamed_webm_opus(samples: np.ndarray, rate: int = 48_000) -> bytes:
    """WebM/Opus as a browser's MediaRecorder uploads it: written as a stream, so it states no duration."""
    sink = _Unseekable()
    _encode_to(sink, samples, rate, "libopus", "webm")
    return bytes(sink.data)


def sox(*args: str | Path) -> None:
    """Run sox, skipping the test when it is not installed (only GSM-in-WAV truly needs it)."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (apt-get install sox)")
    subprocess.run(["sox", *map(str, args)], check=True, capture_output=True)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency, to the FFT's resolution (0.5 Hz for 2 s)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


def amplitude_at(samples: np.ndarray, rate: int, hz: float) -> float:
    """The amplitude of a sine at `hz` (exact for a whole number of cycles in the window)."""
    spectrum = np.abs(np.fft.rfft(samples)) * 2 / samples.size
    return float(spectrum[round(hz * samples.size / rate)])


def click_time(samples: np.ndarray, rate: int) -> float:
    """When the click starts: the first sample louder than the tone can be."""
    loud = np.flatnonzero(np.abs(samples) > CLICK_THRESHOLD)
    assert loud.size, "no click in the decoded audio"
    return float(loud[0] / rate)


class _Unseekable:
    """A write-only sink, so muxers cannot seek back to fill in durations and indexes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        return len(chunk)


def _encode_to(
    file: object,
    samples: np.ndarray,
    rate: int,
    codec: str,
    container: str,
    *,
    layout: str = "mono",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> None:
    with av.open(file, "w", format=container, options=container_options or {}) as output:
        stream = output.add_stream(codec, rate=rate, layout=layout, options=options or {})
        context = stream.codec_context
        # Encoders want their own sample format and, most of them, frames of exactly frame_size samples.
        resampler = av.AudioResampler(
            format=context.format.name, layout=layout, rate=rate, frame_size=context.frame_size or 1024
        )
        frame = av.AudioFrame.from_ndarray(samples[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            output.mux(stream.encode(chunk))
        output.mux(stream.encode(None))
