"""decode_audio on every format a voicemail arrives in, and on every way an upload can be unusable.

Fixtures are made at test time (tests/support/audio_fixtures.py) from a 2.0 s, 1 kHz tone with a click at
0.5 s, so each decoded file is checked for what matters downstream: its length (transcript durations), its
pitch (the resampler), and the click's position (word timestamps must not drift by codec delays).
"""

from __future__ import annotations

import contextlib
import gc
import io
import struct
import tracemalloc
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.support.audio_fixtures import (
    CLICK_AT,
    DURATION,
    TONE_HZ,
    amplitude_at,
    click_time,
    dominant_frequency,
    encoded,
    sine,
    sox,
    streamed_webm_opus,
    tone_with_click,
    wav_bytes,
    write_faststart_m4a,
    write_wav,
)
from tests.support.bombs import silent_flac, wav_claiming_channels, wav_claiming_rate
from wazo_stt.audio import SAMPLE_RATE, AudioError, DecodedAudio, decode_audio, inspect_audio
from wazo_stt.audio import decode as decode_module
from wazo_stt.engine.pipeline import SILENCE_PEAK

ONE_SAMPLE = 1 / SAMPLE_RATE
MP4 = "mov,mp4,m4a,3gp,3g2,mj2"


def _pcm_wav(rate: int) -> Callable[[Path], Path]:
    return lambda tmp: write_wav(tmp / "in.wav", tone_with_click(rate), rate)


def _pyav(rate: int, codec: str, container: str, name: str, **kwargs: Any) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(encoded(tone_with_click(rate), rate, codec, container, **kwargs))
        return tmp / name

    return make


def _sox(rate: int, name: str, *sox_args: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        source = write_wav(tmp / "source.wav", tone_with_click(rate), rate)
        sox(source, *sox_args, tmp / name)
        return tmp / name

    return make


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], Path]
    codec: str
    container: str
    source_rate: int
    channels: int = 1
    # How far the decoded length may be from the 2.0 s encoded. Measured with PyAV 18.1 (FFmpeg 8):
    # every format here decodes to exactly 32000 samples except the two Vorbis encoders' files.
    duration_tolerance: float = ONE_SAMPLE


CASES = {
    "wav-pcm-8k": Case(_pcm_wav(8000), "pcm_s16le", "wav", 8000),
    "wav-pcm-16k": Case(_pcm_wav(16000), "pcm_s16le", "wav", 16000),
    "wav-pcm-44.1k": Case(_pcm_wav(44100), "pcm_s16le", "wav", 44100),
    "wav-pcm-48k": Case(_pcm_wav(48000), "pcm_s16le", "wav", 48000),
    "wav-mulaw-8k": Case(_pyav(8000, "pcm_mulaw", "wav", "in.wav"), "pcm_mulaw", "wav", 8000),
    "wav-alaw-8k": Case(_pyav(8000, "pcm_alaw", "wav", "in.wav"), "pcm_alaw", "wav", 8000),
    # Asterisk's wav49: GSM 06.10 in WAV. Only sox (or ffmpeg with libgsm) writes it.
    "wav-gsm-8k": Case(_sox(8000, "in.wav", "-e", "gsm-full-rate"), "gsm_ms", "wav", 8000),
    "mp3-16k": Case(_pyav(16000, "libmp3lame", "mp3", "in.mp3"), "mp3", "mp3", 16000),
    "mp3-44.1k": Case(_pyav(44100, "libmp3lame", "mp3", "in.mp3"), "mp3", "mp3", 44100),
    "flac-44.1k": Case(_pyav(44100, "flac", "flac", "in.flac"), "flac", "flac", 44100),
    # FFmpeg's own Vorbis encoder is experimental and stereo-only: the tone goes in on both channels.
    # It pads the end: 2.00125 s come back.
    "ogg-vorbis-44.1k": Case(
        _pyav(44100, "vorbis", "ogg", "in.ogg", layout="stereo", options={"strict": "experimental"}),
        "vorbis",
        "ogg",
        44100,
        channels=2,
        duration_tolerance=0.002,
    ),
    # libvorbis through sox, as most OGG files are made. FFmpeg drops the last 256 samples: 1.984 s.
    "ogg-vorbis-sox-16k": Case(_sox(16000, "in.ogg"), "vorbis", "ogg", 16000, duration_tolerance=0.020),
    "ogg-opus-48k": Case(_pyav(48000, "libopus", "ogg", "in.opus"), "opus", "ogg", 48000),
    # Opus always decodes at 48 kHz, whatever rate went into the encoder.
    "ogg-opus-from-16k": Case(_pyav(16000, "libopus", "ogg", "in.opus"), "opus", "ogg", 48000),
    "webm-opus-48k": Case(_pyav(48000, "libopus", "webm", "in.webm"), "opus", "matroska,webm", 48000),
    # AAC decodes whole 1024-sample frames: the stream's declared duration trims the last one's padding
    # (48 ms at 16 kHz), and the MP4 edit list drops the 1024 priming samples at the start.
    "m4a-aac-44.1k": Case(_pyav(44100, "aac", "ipod", "in.m4a"), "aac", MP4, 44100),
    "m4a-aac-16k": Case(_pyav(16000, "aac", "ipod", "in.m4a"), "aac", MP4, 16000),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decodes_each_format_to_16k_mono_float(case: Case, tmp_path: Path) -> None:
    audio = decode_audio(case.make(tmp_path).read_bytes())

    assert (audio.codec, audio.container) == (case.codec, case.container)
    assert (audio.source_rate, audio.channels) == (case.source_rate, case.channels)
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert np.abs(audio.samples).max() <= 1.0
    assert audio.duration == pytest.approx(audio.samples.size / SAMPLE_RATE)
    assert audio.duration == pytest.approx(DURATION, abs=case.duration_tolerance)
    assert dominant_frequency(audio.samples, SAMPLE_RATE) == pytest.approx(TONE_HZ, abs=1.0)
    # Measured within 0.13 ms for every format (GSM is the worst): no codec delay is left in the timeline.
    assert click_time(audio.samples, SAMPLE_RATE) == pytest.approx(CLICK_AT, abs=0.001)


def test_a_path_decodes_like_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "in.mp3"
    path.write_bytes(encoded(tone_with_click(16000), 16000, "libmp3lame", "mp3"))
    from_bytes = decode_audio(path.read_bytes())
    for source in (path, str(path)):
        from_path = decode_audio(source)
        assert from_path.codec == from_bytes.codec
        np.testing.assert_array_equal(from_path.samples, from_bytes.samples)


def test_stereo_is_down_mixed_keeping_both_channels() -> None:
    left, right = sine(16000, DURATION, 1000, 0.5), sine(16000, DURATION, 440, 0.5)
    audio = decode_audio(wav_bytes(np.column_stack([left, right]), 16000))

    assert audio.channels == 2
    assert audio.duration == pytest.approx(DURATION)
    # FFmpeg's stereo-to-mono matrix: (L + R) / sqrt(2), so each channel's tone keeps 0.5 / sqrt(2).
    assert amplitude_at(audio.samples, SAMPLE_RATE, 1000) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert amplitude_at(audio.samples, SAMPLE_RATE, 440) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_loud_identical_channels_are_scaled_not_clipped() -> None:
    # (L + R) / sqrt(2) of two identical 0.9 sines peaks at 1.27: scaled back, the sine keeps its shape.
    tone = sine(16000, DURATION, 440, 0.9)
    audio = decode_audio(wav_bytes(np.column_stack([tone, tone]), 16000))

    assert np.abs(audio.samples).max() == pytest.approx(1.0)
    assert np.corrcoef(audio.samples, tone)[0, 1] > 0.9999


def test_a_wav_named_mp3_is_read_as_wav(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "voicemail.mp3", tone_with_click(8000), 8000)
    audio = decode_audio(path)
    assert (audio.codec, audio.container) == ("pcm_s16le", "wav")


def test_the_extension_cannot_make_bytes_decodable(tmp_path: Path) -> None:
    # Given the name, FFmpeg would read any bytes as raw mu-law because of ".ul".
    path = tmp_path / "voicemail.ul"
    path.write_bytes(np.random.default_rng(0).bytes(8000))
    with pytest.raises(AudioError) as caught:
        decode_audio(path)
    assert caught.value.reason == "undecodable"


def _assert_undecodable(error: AudioError, *not_in_message: str) -> None:
    assert error.reason == "undecodable"
    message = str(error)
    assert message.startswith("Could not decode the audio: ")
    for fragment in ("Traceback", "Errno", "<none>", *not_in_message):
        assert fragment not in message


def test_empty_bytes_are_empty() -> None:
    with pytest.raises(AudioError) as caught:
        decode_audio(b"")
    assert caught.value.reason == "empty"
    assert str(caught.value) == "The audio file is empty"


def test_an_empty_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as caught:
        decode_audio(path)
    assert caught.value.reason == "empty"


def test_a_wav_header_without_samples_is_empty() -> None:
    with pytest.raises(AudioError) as caught:
        decode_audio(wav_bytes(np.zeros(0, dtype=np.float32), 8000))
    assert caught.value.reason == "empty"
    assert "no audio samples" in str(caught.value)


def test_random_bytes_are_undecodable() -> None:
    with pytest.raises(AudioError) as caught:
        decode_audio(np.random.default_rng(1).bytes(4096))
    _assert_undecodable(caught.value)


def test_a_text_file_is_undecodable_and_its_path_is_not_told(tmp_path: Path) -> None:
    path = tmp_path / "secret-name.wav"
    path.write_text("This is a voicemail, honest.\n" * 40)
    with pytest.raises(AudioError) as caught:
        decode_audio(path)
    _assert_undecodable(caught.value, "secret-name", str(tmp_path))


def test_an_image_has_no_audio_stream() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as output:
        stream = output.add_stream("png")
        stream.width = stream.height = 8
        stream.pix_fmt = "rgb24"
        output.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")))
        output.mux(stream.encode(None))
    with pytest.raises(AudioError) as caught:
        decode_audio(buffer.getvalue())
    _assert_undecodable(caught.value)
    assert "no audio stream" in str(caught.value)


def test_a_truncated_wav_keeps_what_it_holds() -> None:
    data = wav_bytes(tone_with_click(8000), 8000)
    audio = decode_audio(data[: 44 + 8000 * 2 + 1])  # 1.0 s and half a sample
    assert audio.duration == pytest.approx(1.0, abs=ONE_SAMPLE)
    assert click_time(audio.samples, SAMPLE_RATE) == pytest.approx(CLICK_AT, abs=0.001)


def test_a_truncated_mp3_keeps_what_it_holds() -> None:
    data = encoded(tone_with_click(16000), 16000, "libmp3lame", "mp3")
    audio = decode_audio(data[: len(data) // 2])
    assert 0.8 < audio.duration < 1.05  # whole MP3 frames (36 ms at 16 kHz) up to the cut
    assert click_time(audio.samples, SAMPLE_RATE) == pytest.approx(CLICK_AT, abs=0.001)


def test_damaged_mp3_packets_are_skipped() -> None:
    data = bytearray(encoded(tone_with_click(16000), 16000, "libmp3lame", "mp3"))
    middle = len(data) * 2 // 3
    data[middle : middle + 1000] = np.random.default_rng(2).bytes(1000)
    audio = decode_audio(bytes(data))
    assert audio.duration > 1.5
    assert dominant_frequency(audio.samples, SAMPLE_RATE) == pytest.approx(TONE_HZ, abs=1.0)
    assert click_time(audio.samples, SAMPLE_RATE) == pytest.approx(CLICK_AT, abs=0.001)


def test_an_m4a_cut_before_its_index_is_undecodable() -> None:
    # PyAV, like ffmpeg without -movflags faststart, writes the index (moov) last: the data is unreadable.
    data = encoded(tone_with_click(16000), 16000, "aac", "ipod")
    with pytest.raises(AudioError) as caught:
        decode_audio(data[: len(data) * 9 // 10])
    _assert_undecodable(caught.value)


def test_an_m4a_with_its_index_first_keeps_what_it_holds(tmp_path: Path) -> None:
    data = write_faststart_m4a(tmp_path / "in.m4a", tone_with_click(16000), 16000).read_bytes()
    audio = decode_audio(data[: len(data) // 2])
    assert 0.7 < audio.duration < 1.05
    assert click_time(audio.samples, SAMPLE_RATE) == pytest.approx(CLICK_AT, abs=0.001)


def test_latin1_tags_do_not_make_a_wav_undecodable() -> None:
    # A LIST/INFO title in Latin-1, as Windows tools and some PBXs write it. PyAV decodes tags as strict UTF-8
    # by default, and av.open itself then raises UnicodeDecodeError.
    data = wav_bytes(tone_with_click(8000), 8000)
    title = "Messagerie vocale société".encode("latin-1") + b"\0"
    info = b"INFO" + b"INAM" + struct.pack("<I", len(title)) + title
    chunks = data[12:36] + b"LIST" + struct.pack("<I", len(info)) + info + data[36:]
    audio = decode_audio(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    assert audio.duration == pytest.approx(DURATION)


def test_a_sample_rate_change_midway_is_followed() -> None:
    # Two MP3s glued together (16 kHz then 44.1 kHz): PyAV's resampler would refuse the second half.
    parts = [
        encoded(tone_with_click(rate, tone_hz=hz), rate, "libmp3lame", "mp3")
        for rate, hz in ((16000, 1000.0), (44100, 500.0))
    ]
    audio = decode_audio(b"".join(parts))
    # The second file's encoder delay and padding are not removed: only the first file's header is read.
    assert audio.duration == pytest.approx(2 * DURATION, abs=0.15)
    half = audio.samples.size // 2
    assert dominant_frequency(audio.samples[: half - 4000], SAMPLE_RATE) == pytest.approx(1000, abs=2)
    assert dominant_frequency(audio.samples[half + 4000 :], SAMPLE_RATE) == pytest.approx(500, abs=2)


@pytest.mark.parametrize(
    ("codec", "rate"),
    [("pcm_s16le", 16000), ("pcm_mulaw", 8000), ("pcm_alaw", 8000), ("libmp3lame", 16000), ("libopus", 48000)],
)
def test_digital_silence_decodes_below_the_engines_silence_peak(codec: str, rate: int) -> None:
    # Silence is a transcript, not an error: it decodes, and stays under the peak the engine takes for silence.
    # A-law's silence decodes to a constant 8/32768, above the 1e-4 a pure-zeros check would use.
    container = {"libmp3lame": "mp3", "libopus": "ogg"}.get(codec, "wav")
    audio = decode_audio(encoded(np.zeros(rate, dtype=np.float32), rate, codec, container))
    assert audio.duration == pytest.approx(1.0, abs=0.1)
    assert np.abs(audio.samples).max() < SILENCE_PEAK


def test_gsm_silence_decodes_below_the_engines_silence_peak(tmp_path: Path) -> None:
    # A GSM frame of silence decodes to +/-32/32768 (-60 dBFS): still nothing anyone said.
    source = write_wav(tmp_path / "zeros.wav", np.zeros(8000, dtype=np.float32), 8000)
    sox(source, "-e", "gsm-full-rate", tmp_path / "gsm.wav")
    assert np.abs(decode_audio(tmp_path / "gsm.wav").samples).max() < SILENCE_PEAK


def test_a_quiet_voice_is_not_silence() -> None:
    # -40 dBFS: a faint recording the engine may still make out.
    audio = decode_audio(wav_bytes(sine(8000, 1.0, 300, 0.01), 8000))
    assert np.abs(audio.samples).max() == pytest.approx(0.01, rel=0.05)


def test_nan_in_a_float_wav_is_zeroed() -> None:
    samples = sine(16000, 1.0, 440, 0.5)
    samples[8000:8010] = np.nan
    audio = decode_audio(encoded(samples, 16000, "pcm_f32le", "wav"))
    assert np.isfinite(audio.samples).all()
    assert dominant_frequency(audio.samples, SAMPLE_RATE) == pytest.approx(440, abs=1)


@contextlib.contextmanager
def _counting_decoded_seconds() -> Iterator[list[float]]:
    """Count the seconds of audio that reach decode_audio's resampler: proof a refusal did not decode it all."""
    total = [0.0]
    real = decode_module.av.AudioResampler

    class CountingResampler:
        def __init__(self, **kwargs: Any) -> None:
            self._resampler = real(**kwargs)

        def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
            if frame is not None:
                total[0] += frame.samples / frame.sample_rate
            return self._resampler.resample(frame)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decode_module.av, "AudioResampler", CountingResampler)
        yield total


def _long_wav(seconds: int, rate: int = 8000) -> bytes:
    return wav_bytes(np.tile(sine(rate, 1.0, 1000, 0.3), seconds), rate)


def test_too_long_is_refused_from_the_header() -> None:
    data = _long_wav(600)
    with _counting_decoded_seconds() as decoded, pytest.raises(AudioError) as caught:
        decode_audio(data, max_duration=60)
    assert caught.value.reason == "too_long"
    assert str(caught.value) == "Audio is 10m long; the limit is 1m (MAX_AUDIO_DURATION_SECS=60)"
    assert decoded[0] == 0


def test_too_long_message_speaks_hours() -> None:
    # 4h 10m at 10 Hz, 8-bit: the header tells the length, in 150 kB.
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(10)
        out.writeframes(bytes([128]) * (4 * 3600 + 600) * 10)
    with pytest.raises(AudioError) as caught:
        decode_audio(buffer.getvalue(), max_duration=14400)
    assert str(caught.value) == "Audio is 4h 10m long; the limit is 4h 0m (MAX_AUDIO_DURATION_SECS=14400)"


def test_too_long_by_less_than_the_message_can_show() -> None:
    with pytest.raises(AudioError) as caught:
        decode_audio(wav_bytes(tone_with_click(8000), 8000), max_duration=1.98)
    assert str(caught.value) == "Audio is longer than 2s; the limit is 2s (MAX_AUDIO_DURATION_SECS=1.98)"


def test_too_long_without_a_header_stops_decoding_at_the_limit() -> None:
    data = streamed_webm_opus(sine(48000, 30.0, 1000, 0.3))
    with _counting_decoded_seconds() as decoded, pytest.raises(AudioError) as caught:
        decode_audio(data, max_duration=2)
    assert caught.value.reason == "too_long"
    assert str(caught.value) == "Audio is longer than 2s; the limit is 2s (MAX_AUDIO_DURATION_SECS=2)"
    assert decoded[0] < 3  # of 30


def test_streamed_webm_without_a_duration_decodes() -> None:
    audio = decode_audio(streamed_webm_opus(tone_with_click(48000)))
    assert audio.duration == pytest.approx(DURATION, abs=ONE_SAMPLE)
    assert click_time(audio.samples, SAMPLE_RATE) == pytest.approx(CLICK_AT, abs=0.001)


@pytest.mark.parametrize(("codec", "container"), [("libmp3lame", "mp3"), ("aac", "ipod"), ("libopus", "ogg")])
def test_audio_exactly_at_the_limit_passes(codec: str, container: str) -> None:
    # Opus files declare a few ms more than they hold, AAC decodes 48 ms of padding past its declared end:
    # neither may turn a 2.0 s recording into one over a 2.0 s limit.
    rate = 48000 if codec == "libopus" else 16000
    audio = decode_audio(encoded(tone_with_click(rate), rate, codec, container), max_duration=DURATION)
    assert isinstance(audio, DecodedAudio)
    assert audio.duration <= DURATION


@pytest.mark.parametrize("declares_duration", [True, False], ids=["wav", "webm-without-duration"])
def test_decoding_holds_the_recording_once(declares_duration: bool) -> None:
    """Peak memory while decoding is the decoded samples, not twice them (an hour would cost 460 MB, not 230).

    Counted by tracemalloc, which sees NumPy's allocations: deterministic, unlike RSS on a shared machine.
    """
    seconds = 600 if declares_duration else 120
    signal = sine(8000, seconds, 440.0, 0.5)
    data = wav_bytes(signal, 8000) if declares_duration else streamed_webm_opus(sine(48_000, seconds, 440.0, 0.5))
    del signal
    tracemalloc.start()
    try:
        decoded = decode_audio(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.duration == pytest.approx(seconds, abs=0.1)
    assert peak < 1.1 * decoded.samples.nbytes + 2_000_000, (peak, decoded.samples.nbytes)


# --- hostile uploads (issue 14): refused from the header, or decoded without holding them ----------------------


@pytest.mark.parametrize("check", [decode_audio, inspect_audio], ids=["decode", "inspect"])
def test_a_wav_claiming_1_hz_is_refused_from_its_header(check: Callable[..., object]) -> None:
    """16 KB at a claimed 1 Hz passed for 2 h 13 min of audio; 4 kHz is the floor."""
    with _counting_decoded_seconds() as decoded, pytest.raises(AudioError) as caught:
        check(wav_claiming_rate(1), max_duration=14400)
    assert caught.value.reason == "undecodable"
    assert "implausible sample rate (1 Hz); accepted: 4000 to 768000 Hz" in caught.value.message
    assert decoded[0] == 0


@pytest.mark.parametrize(("rate", "refused"), [(3_999, True), (4_000, False), (8_000, False)])
def test_the_sample_rate_floor(rate: int, refused: bool) -> None:
    data = wav_claiming_rate(rate)
    if refused:
        with pytest.raises(AudioError, match="implausible sample rate"):
            inspect_audio(data)
    else:
        assert inspect_audio(data).source_rate == rate


def test_a_header_claiming_too_many_channels_is_refused() -> None:
    with _counting_decoded_seconds() as decoded, pytest.raises(AudioError, match="100 channels"):
        inspect_audio(wav_claiming_channels(100))
    assert decoded[0] == 0


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_inspecting_agrees_with_decoding(case: Case, tmp_path: Path) -> None:
    """What a submission records (inspect_audio) is what the worker will decode (decode_audio), to the sample."""
    data = case.make(tmp_path).read_bytes()
    decoded, info = decode_audio(data), inspect_audio(data)
    assert info.duration == decoded.duration
    assert (info.codec, info.container, info.source_rate, info.channels) == (
        decoded.codec,
        decoded.container,
        decoded.source_rate,
        decoded.channels,
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"not audio at all" * 100],
    ids=["empty", "garbage"],  # silence is accepted by both: its transcript is empty
)
def test_inspecting_refuses_what_decoding_refuses(data: bytes) -> None:
    with pytest.raises(AudioError) as by_decode:
        decode_audio(data)
    with pytest.raises(AudioError) as by_inspect:
        inspect_audio(data)
    assert (by_inspect.value.reason, by_inspect.value.message) == (by_decode.value.reason, by_decode.value.message)


def test_inspecting_ten_minutes_holds_no_samples() -> None:
    """decode_audio holds 64 KB per second (38 MB for these 10 minutes); inspect_audio holds one frame at a time."""
    data = wav_bytes(np.tile(sine(8000, 1.0, 440, 0.3), 600), 8000)
    tracemalloc.start()
    try:
        info = inspect_audio(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.duration == pytest.approx(600, abs=0.01)
    assert peak < 2_000_000, peak


def test_a_flac_bomb_without_a_declared_length_is_stopped_at_the_limit() -> None:
    bomb = silent_flac(1800, declare_duration=False)  # 30 minutes in ~330 KB
    assert len(bomb) < 400_000
    with _counting_decoded_seconds() as decoded, pytest.raises(AudioError) as caught:
        inspect_audio(bomb, max_duration=60)
    assert caught.value.reason == "too_long"
    assert decoded[0] < 62


def test_a_refused_decode_frees_its_buffer_without_the_garbage_collector() -> None:
    """A refusal once left its 0.9 GB buffer in a reference cycle until the collector ran: here, none runs."""
    bomb = silent_flac(600, declare_duration=False)  # buffers 60 s, then grows: 38 MB by the 10-minute limit
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        with pytest.raises(AudioError, match="longer than") as caught:
            decode_audio(bomb, max_duration=590)
        del caught
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        gc.enable()
    assert peak > 30_000_000, peak  # the buffer was there...
    assert held < 1_000_000, held  # ...and is gone, with no collection
