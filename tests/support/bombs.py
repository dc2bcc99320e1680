"""Audio bombs from issue 14: tiny files that decode to hours, or whose headers lie."""

from __future__ import annotations

import io
import struct

import av
import numpy as np

from tests.support.audio_fixtures import sine, wav_bytes


def silent_flac(seconds: int, rate: int = 8000, *, declare_duration: bool = True) -> bytes:
    """FLAC of digital silence: ~180 bytes per second, so 4 hours fit in 2.6 MB and decode to 0.9 GB.

    Without ``declare_duration`` the STREAMINFO sample count is zeroed ("unknown", as a streaming encoder
    writes it): only decoding it all tells its length.
    """
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        zeros = np.zeros((1, rate), dtype=np.int16)
        for second in range(seconds):
            frame = av.AudioFrame.from_ndarray(zeros, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, second * rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buffer.getvalue())
    if not declare_duration:
        # "fLaC", a 4-byte block header, then STREAMINFO: its 36-bit sample count ends at byte 26.
        data[21] &= 0xF0
        data[22:26] = bytes(4)
    return bytes(data)


def wav_claiming_rate(rate: int, payload_bytes: int = 16_000) -> bytes:
    """A 16-bit mono WAV of `payload_bytes` whose header claims `rate` (the 1 Hz one passed for 2 h 13 min)."""
    data = bytearray(wav_bytes(sine(8000, payload_bytes / 2 / 8000, 440, 0.5), 8000))
    struct.pack_into("<II", data, 24, rate, 2 * rate)  # the fmt chunk's sample rate and byte rate
    return bytes(data)


def wav_claiming_channels(channels: int) -> bytes:
    """A WAV whose fmt chunk claims `channels` (the data stays 1 second of mono 8 kHz)."""
    data = bytearray(wav_bytes(sine(8000, 1.0, 440, 0.5), 8000))
    struct.pack_into("<H", data, 22, channels)
    struct.pack_into("<H", data, 32, 2 * channels)  # block align
    return bytes(data)
