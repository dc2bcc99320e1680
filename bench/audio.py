"""Deterministic benchmark audio: espeak-ng speech with pauses, shaped like voicemails and call recordings.

Silero VAD hears synthetic tones as silence, so only real (synthetic) speech exercises the VAD path the server
really takes. Utterances are spoken once by espeak-ng, resampled to 8 kHz by sox (telephone rate), then
assembled with numpy into recordings of an exact length: a seeded generator picks utterances and pauses, and a
faint noise floor stands in for the line. Long files are the same utterances joined with pauses. Files are
written to a cache directory (never to the repository) and reused while the recipe version is unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RATE = 8000
# Bump when the recipe changes, so an old cache is not mistaken for the new audio.
RECIPE = "v1"

SENTENCES = (
    "Hi, it's Marc, call me back.",
    "Hello, this is Julie from the front desk.",
    "I'm calling about the invoice we sent last Tuesday.",
    "Could you give me a call back when you get a moment?",
    "The meeting has been moved to Thursday at three in the afternoon.",
    "My number is five five five, two one three, four four nine zero.",
    "Please let me know if the delivery can be scheduled before the end of the month.",
    "We noticed an issue with your account and would like to confirm a few details with you.",
    "Thanks a lot, have a great day.",
    "It's about the quarterly report, there are a couple of figures that don't add up.",
    "I left the documents at the reception, they are in a blue folder with your name on it.",
    "If you can't reach me on my mobile, try the office line after two.",
    "The technician will come by tomorrow morning between eight and ten.",
    "Sorry, I think I have the wrong number.",
    "Your prescription is ready to be picked up at the pharmacy.",
    "This is a reminder for your appointment on Monday, the twelfth of May.",
    "We need your signature on the contract before we can start the work.",
    "Bye for now.",
    "I tried to reach you earlier but the line was busy.",
    "The conference call link is in the email I sent this morning.",
    "Let's talk about the budget for next year when you are back from holiday.",
    "The parcel could not be delivered because nobody was home.",
    "Call me as soon as you hear this, it's fairly urgent.",
    "Everything is fine, I just wanted to say hello.",
)
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3")
SPEEDS = (150, 165, 180)


@dataclass(frozen=True)
class Recording:
    """A generated file and what it holds (for tables and for checking that the server saw the same length)."""

    path: Path
    duration: float  # seconds
    speech_seconds: float  # seconds of utterances in it (before padding)
    fmt: str  # "wav" (PCM 16-bit), "ulaw" (G.711 in WAV) or "mp3"


class SpeechBank:
    """Every sentence in every voice and speed, spoken once and kept as 8 kHz int16 arrays in the cache."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache / RECIPE
        self.cache.mkdir(parents=True, exist_ok=True)
        bank = self.cache / "utterances.npz"
        if not bank.is_file():
            _require("espeak-ng", "sox")
            arrays = self._speak_all()
            np.savez(bank, *arrays)
        with np.load(bank) as data:
            self.utterances = [data[f"arr_{i}"] for i in range(len(data.files))]

    @staticmethod
    def _speak_all() -> list[np.ndarray]:
        arrays = []
        with tempfile.TemporaryDirectory() as tmp:
            raw, low = Path(tmp) / "raw.wav", Path(tmp) / "low.wav"
            for i, text in enumerate(SENTENCES):
                for j, voice in enumerate(VOICES):
                    speed = SPEEDS[(i + j) % len(SPEEDS)]
                    subprocess.run(
                        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text],
                        check=True,
                        capture_output=True,
                    )
                    subprocess.run(
                        ["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(low)],
                        check=True,
                        capture_output=True,
                    )
                    arrays.append(_trim(_read_wav(low)))
        return arrays

    def compose(
        self, seconds: float, seed: int, *, pause: tuple[float, float] = (0.3, 1.5)
    ) -> tuple[np.ndarray, float]:
        """``seconds`` of audio: lead-in silence, utterances separated by pauses, silence to the exact length.

        Returns int16 samples at 8 kHz and the seconds of speech in them.
        """
        rng = np.random.default_rng(seed)
        total = round(seconds * RATE)
        out = np.zeros(total, dtype=np.float32)
        pos = int(rng.uniform(0.3, 1.0) * RATE)
        speech = 0
        fitting = [u for u in self.utterances if len(u) < total - pos]
        while fitting:
            utterance = fitting[int(rng.integers(len(fitting)))]
            if pos + len(utterance) > total - int(0.3 * RATE):
                # Try a shorter one once before giving up, so short files are not mostly silence.
                short = [u for u in fitting if pos + len(u) <= total - int(0.3 * RATE)]
                if not short:
                    break
                utterance = short[int(rng.integers(len(short)))]
            gain = rng.uniform(0.5, 1.0)
            out[pos : pos + len(utterance)] = utterance * gain
            pos += len(utterance)
            speech += len(utterance)
            # Mostly short pauses between sentences, now and then a longer one (someone thinking).
            gap = rng.uniform(*pause) if rng.random() > 0.1 else rng.uniform(2.0, 3.5)
            pos += int(gap * RATE)
        noise = rng.normal(0.0, 40.0, total).astype(np.float32)  # about -58 dBFS: a quiet line, not digital zero
        mixed = np.clip(out + noise, -32768, 32767).astype(np.int16)
        return mixed, speech / RATE

    def recording(self, name: str, seconds: float, fmt: str, seed: int) -> Recording:
        """The cached file ``name.<ext>``, made now if missing."""
        ext = "mp3" if fmt == "mp3" else "wav"
        path = self.cache / f"{name}-{fmt}.{ext}"
        meta = self.cache / f"{name}-{fmt}.json"
        if path.is_file() and meta.is_file():
            return Recording(path=path, **{k: v for k, v in json.loads(meta.read_text()).items() if k != "path"})
        samples, speech = self.compose(seconds, seed)
        with tempfile.TemporaryDirectory() as tmp:
            pcm = Path(tmp) / "pcm.wav"
            _write_wav(pcm, samples)
            tmp_out = Path(tmp) / f"out.{ext}"
            if fmt == "wav":
                shutil.copyfile(pcm, tmp_out)
            elif fmt == "ulaw":
                _require("sox")
                subprocess.run(["sox", str(pcm), "-e", "u-law", str(tmp_out)], check=True, capture_output=True)
            elif fmt == "mp3":
                _require("ffmpeg")
                subprocess.run(
                    [
                        *("ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(pcm), "-map_metadata", "-1"),
                        *("-fflags", "+bitexact", "-codec:a", "libmp3lame", "-b:a", "32k", str(tmp_out)),
                    ],
                    check=True,
                    capture_output=True,
                )
            else:
                raise ValueError(f"unknown format {fmt!r}")
            shutil.move(tmp_out, path)
        rec = Recording(path=path, duration=round(len(samples) / RATE, 3), speech_seconds=round(speech, 2), fmt=fmt)
        meta.write_text(json.dumps({k: v for k, v in asdict(rec).items() if k != "path"}))
        return rec


def voicemail_mix(bank: SpeechBank, durations: list[float], prefix: str) -> list[Recording]:
    """Voicemails of the given lengths, cycling through the formats phones and PBXs send."""
    formats = ("wav", "mp3", "ulaw")
    return [
        bank.recording(f"{prefix}-{i:02d}-{d:g}s", d, formats[i % len(formats)], seed=1000 + i)
        for i, d in enumerate(durations)
    ]


def voicemail_durations(count: int, seed: int, low: float = 5.0, high: float = 120.0) -> list[float]:
    """Lengths a voicemail box really sees: most 10-40 s, a few long ones (log-normal, clipped to the range)."""
    rng = np.random.default_rng(seed)
    values = np.clip(rng.lognormal(mean=np.log(25.0), sigma=0.7, size=count), low, high)
    return [round(float(v), 1) for v in values]


def _require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"benchmark audio needs {', '.join(missing)} (apt-get install espeak-ng sox ffmpeg)")


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as f:
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).astype(np.float32)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(samples.astype("<i2").tobytes())


def _trim(samples: np.ndarray, threshold: float = 64.0) -> np.ndarray:
    """espeak-ng pads each utterance with silence; the recipe places pauses itself."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples
