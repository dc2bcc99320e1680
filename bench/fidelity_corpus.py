"""The fidelity corpus: voicemail-like sentences with known text, spoken by espeak-ng, in every input format.

Shared by the fidelity harness (``bench/fidelity.py``) and the Whisper engine test (``tests/test_whisper_engine.py``)
so both measure the same audio with the same text normalisation. Everything is deterministic: the same espeak-ng
and sox give the same files, and long recordings are laid out by a seeded random generator, so a WER measured
on one machine can be compared with one measured on another.

Why espeak-ng: it needs no download, speaks exactly the text we give it (so the reference transcript is known),
and is intelligible enough for Whisper ``tiny.en``. Its robotic voice makes absolute WER higher than on human
speech; what the harness compares is the *difference* between paths on the same audio.

Numbers are written in the reference as espeak-ng says them (words); ``normalize`` turns a model's digits
("555-0192", "4.30", "21st") back into words, so a transcript is not penalised for writing digits.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import wave
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
ESPEAK_SPEED = 160  # words per minute, as in FACTS.md's measurement

# Voicemail-like English: greetings, names, call-back numbers, times, dates, requests.
ENGLISH: tuple[str, ...] = (
    "Hi Alice, this is Bob from accounting. Please call me back when you get a chance.",
    "Hello, it's Jennifer. The meeting moved to four thirty on the twenty first.",
    "Good morning, this is the dental office calling to confirm your appointment tomorrow at ten.",
    "Hey, it's Mark. I'm running late, so start without me and I'll join in twenty minutes.",
    "Call me back at five five five, zero one nine two.",
    "This message is for David. Your package has arrived and is waiting at the front desk.",
    "Hi, this is Sarah from the bank. We need to verify a recent transaction on your account.",
    "It's your mother. Don't forget dinner on Sunday, and bring the kids.",
    "Hello, I'm calling about the apartment you listed. Is it still available?",
    "This is a reminder that your car is ready for pickup at the garage.",
    "Hi Tom, the server went down again last night. Can you take a look this morning?",
    "Good afternoon, this is Linda from human resources about your benefits form.",
    "Please call the support line at eight hundred, four two seven, three three one zero.",
    "Hey, it's Chris. The game starts at seven, and I have an extra ticket if you want it.",
    "This is the pharmacy. Your prescription is ready and we close at nine tonight.",
    "Hi, this is Emma. I left my keys on your desk, could you keep them for me?",
    "Hello, this is the school office. Your son has a fever and should be picked up.",
    "It's Paul again. I sent you the contract by email, please sign it before Friday.",
    "Good evening, this is a message for Maria about the delivery scheduled for Monday.",
    "Hi, it's Kevin from the gym. Your membership expires at the end of the month.",
    "This is the airline calling. Your flight has been delayed by two hours.",
    "Hey, it's Rachel. Let me know if you still need a ride to the airport on Thursday.",
    "Hello, this is the city library. The book you reserved is now available.",
    "Hi, this is Daniel. The quarterly report needs a few changes before we send it out.",
    "Please press one to confirm or two to cancel your reservation.",
    "It's Steve. I found your wallet in the parking lot, call me and I'll bring it over.",
    "Good morning, this is the clinic. Your test results are ready, please call us back.",
    "Hi Anna, the plumber will come on Wednesday between eight and noon.",
    "This is a message from the electric company about a planned outage next week.",
    "Hello, it's Michael. I'd like to schedule a call to discuss the new project.",
    "Hi, this is Laura. Thank you for the flowers, they were beautiful.",
    "This is the hotel front desk. We found a phone in your room after checkout.",
    "Hey, it's Jake. The band practice is cancelled tonight because of the storm.",
    "Hello, this is Nancy from the insurance company regarding your claim.",
    "Hi, it's Peter. Could you send me the address of the restaurant for tonight?",
    "Your order number is four seven one nine, and it will ship within three days.",
    "Good afternoon, this is the veterinarian. Your dog is ready to go home.",
    "Hi, this is Olivia. I'm outside the building but the door is locked.",
    "This is the water department. Please check your basement for a leak.",
    "Hello, it's George. Happy birthday, I hope you have a wonderful day.",
    "Hi, this is Grace from the recruiting team. We would like to invite you for a second interview.",
    "This is the moving company. Our truck will arrive on Saturday morning at eight.",
    "Hey, it's Nick. I'm stuck in traffic on the highway, save me a seat.",
    "Hello, this is the post office. We could not deliver your letter because nobody was home.",
    "Hi, it's Helen. The printer on the third floor is out of paper again.",
    "Good morning, this is your doctor's office. Please bring your insurance card on Tuesday.",
    "This is a message for the owner of the blue car parked in front of the gate.",
    "Hi, it's Sam. I picked up the groceries, do you need anything else from the store?",
    "Hello, this is the travel agency. Your hotel in Chicago is confirmed for three nights.",
    "It's Victoria from the office. The client wants to move the call to next Monday.",
    "Hi, this is Frank. The heating in the warehouse stopped working this morning.",
    "Good evening, this is the restaurant. We have a table for four at seven thirty.",
    "Hey, it's Lucy. Can you feed the cat while I'm away this weekend?",
    "This is the bank's fraud department. Please call us back about your credit card.",
    "Hi, this is Ryan from IT. Your new laptop is ready, come and get it when you can.",
    "Hello, it's Margaret. The church meeting is moved to the small hall downstairs.",
    "This is a reminder from the dentist. Please arrive fifteen minutes early.",
    "Hi, it's Brian. I'm sending you the photos from the wedding tonight.",
    "Good afternoon, this is the tax office about the letter we sent you last month.",
    "Hey, it's Jessica. The kids are at my place, you can pick them up after dinner.",
    "Hello, this is the garage again. We also found a problem with the brakes.",
    "Hi, this is Adam. Please call me on my mobile, the office phone is broken.",
    "This is the leasing office. The elevator will be closed for repairs on Friday.",
    "Hi, it's Karen. I forgot my umbrella in your car, could you bring it tomorrow?",
    "Good morning, this is the hospital. Your father is doing well after the operation.",
    "Hey, it's Tony. We won the contract, let's celebrate tonight.",
    "Hello, this is the school bus company. The morning bus will be ten minutes late.",
    "Hi, this is Diana. The presentation slides are on the shared drive.",
    "This message is for Robert. Your prescription needs a new approval from your doctor.",
    "Hi, it's Megan. The train was cancelled, so I'll take the bus and arrive at nine.",
    "Good afternoon, this is the furniture store. Your sofa will be delivered next week.",
    "Hey, it's Luke. Don't forget to bring the projector for the meeting.",
    "Hello, this is the alarm company. We received an alarm from your house at noon.",
    "Hi, this is Sophie. I'll be working from home tomorrow, call me if you need me.",
    "This is the city council. The street will be closed for the parade on Sunday.",
    "Hi, it's Andrew. I can lend you my ladder, it's in the garage.",
    "Good morning, this is the optician. Your new glasses are ready.",
    "Hey, it's Natalie. Thanks for your help yesterday, I really appreciate it.",
    "Hello, this is the recycling center. Your bins will be collected on Thursday.",
    "Hi, it's Oscar. Please send me the invoice, and I'll pay it today.",
)

# For Parakeet users (v3 is multilingual); Whisper tiny.en cannot transcribe it. No numbers: no normaliser here.
FRENCH: tuple[str, ...] = (
    "Bonjour, c'est Pierre. Rappelle-moi dès que possible, s'il te plaît.",
    "Bonjour madame, ici le cabinet médical pour confirmer votre rendez-vous de demain.",
    "Salut, c'est Julie. Je serai en retard ce soir, commencez sans moi.",
    "Ce message est pour Paul. Votre colis est arrivé à l'accueil.",
    "Bonsoir, ici la pharmacie. Votre ordonnance est prête.",
    "Bonjour, je vous appelle au sujet de l'appartement à louer.",
    "Salut, c'est Marc. Le match commence à huit heures, tu viens avec nous?",
    "Ici le garage. Votre voiture est prête, vous pouvez passer la chercher.",
    "Bonjour, c'est la banque. Merci de nous rappeler au sujet de votre compte.",
    "Coucou, c'est maman. N'oublie pas le déjeuner de dimanche.",
    "Bonjour, ici l'école. Votre fille a de la fièvre, merci de venir la chercher.",
    "Bonjour, c'est Sophie des ressources humaines, au sujet de votre contrat.",
)
CORPORA: dict[str, tuple[tuple[str, ...], str]] = {"en": (ENGLISH, "en-us"), "fr": (FRENCH, "fr")}


@dataclass(frozen=True)
class Format:
    """An input format of the audio path, and how to make it from a 16-bit WAV (sox or ffmpeg)."""

    name: str
    description: str
    suffix: str
    tool: str
    args: tuple[str, ...]  # between the input and the output path


FORMATS: tuple[Format, ...] = (
    Format("pcm16k", "16 kHz 16-bit PCM WAV", ".wav", "sox", ("-r", "16000", "-b", "16", "-e", "signed-integer")),
    Format("mulaw8k", "8 kHz G.711 µ-law WAV", ".wav", "sox", ("-r", "8000", "-e", "u-law")),
    Format("alaw8k", "8 kHz G.711 A-law WAV", ".wav", "sox", ("-r", "8000", "-e", "a-law")),
    Format("gsm8k", "8 kHz GSM 06.10 in WAV", ".wav", "sox", ("-r", "8000", "-e", "gsm-full-rate")),
    Format("mp3", "MP3 16 kHz mono 32 kbit/s", ".mp3", "ffmpeg", ("-ar", "16000", "-ac", "1", "-b:a", "32k")),
    Format("opus", "Opus in Ogg 24 kbit/s", ".ogg", "ffmpeg", ("-c:a", "libopus", "-b:a", "24k")),
    Format("stereo", "44.1 kHz 16-bit stereo WAV", ".wav", "sox", ("-r", "44100", "-b", "16", "-c", "2")),
)
FORMATS_BY_NAME = {f.name: f for f in FORMATS}


def require_tools(*tools: str) -> list[str]:
    """The tools among ``tools`` that are not on PATH."""
    return [t for t in tools if shutil.which(t) is None]


def _run(args: Sequence[str | Path]) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def corpus(language: str = "en") -> tuple[tuple[str, ...], str]:
    """The sentences of a language and the espeak-ng voice that speaks them."""
    return CORPORA[language]


def speak(text: str, voice: str, path: Path) -> Path:
    """espeak-ng's WAV (22.05 kHz mono) for ``text``; cached by path."""
    if not path.exists():
        tmp = path.with_suffix(".tmp.wav")
        _run(["espeak-ng", "-v", voice, "-s", str(ESPEAK_SPEED), "-w", tmp, text])
        tmp.rename(path)
    return path


def convert(source: Path, fmt: Format, path: Path) -> Path:
    """``source`` rendered in ``fmt`` (sox for WAV codecs, ffmpeg for MP3 and Opus); cached by path."""
    if not path.exists():
        tmp = path.with_name(path.stem + ".tmp" + fmt.suffix)
        if fmt.tool == "sox":
            _run(["sox", source, *fmt.args, tmp])
        else:
            _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", source, *fmt.args, tmp])
        tmp.rename(path)
    return path


def sentence_id(language: str, index: int) -> str:
    return f"{language}{index:03d}"


def render_sentences(
    cache: Path, language: str = "en", formats: Iterable[str] = ("pcm16k",), indices: Iterable[int] | None = None
) -> dict[str, dict[str, Path]]:
    """``{sentence id: {format name: file}}`` for the chosen sentences, rendered once into ``cache``."""
    texts, voice = corpus(language)
    chosen = list(range(len(texts)) if indices is None else indices)
    out: dict[str, dict[str, Path]] = {}
    base = cache / _voice_key(voice)
    base.mkdir(parents=True, exist_ok=True)
    for i in chosen:
        sid = sentence_id(language, i)
        raw = speak(texts[i], voice, base / f"{sid}-{_text_key(texts[i])}.espeak.wav")
        out[sid] = {name: _render_format(raw, FORMATS_BY_NAME[name]) for name in formats}
    return out


def _render_format(raw: Path, fmt: Format) -> Path:
    stem = raw.name[: -len(".espeak.wav")]
    return convert(raw, fmt, raw.with_name(f"{stem}.{fmt.name}{fmt.suffix}"))


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _voice_key(voice: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", voice.lower())


def read_wav_16k(path: Path) -> np.ndarray:
    """float32 samples of a 16 kHz mono 16-bit WAV (our pcm16k renderings)."""
    with wave.open(str(path), "rb") as file:
        if file.getframerate() != SAMPLE_RATE or file.getnchannels() != 1 or file.getsampwidth() != 2:
            raise ValueError(f"{path} is not 16 kHz mono 16-bit")
        data = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    return (data.astype(np.float32) / 32768.0).copy()


def write_wav_16k(path: Path, samples: np.ndarray) -> Path:
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(pcm.tobytes())
    return path


def speech_onset(samples: np.ndarray, threshold: float = 0.02) -> float:
    """Seconds from the start of a rendering to its first audible sample (espeak-ng leads with a little silence)."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return float(loud[0] / SAMPLE_RATE) if loud.size else 0.0


@dataclass(frozen=True)
class Placement:
    """One sentence inside a long recording: which one, and where its speech starts and ends (seconds)."""

    sentence: str
    onset: float
    offset: float


@dataclass(frozen=True)
class LongFile:
    path: Path
    duration: float
    placements: list[Placement]

    def manifest(self) -> dict[str, object]:
        return {"path": str(self.path), "duration": self.duration, "placements": [asdict(p) for p in self.placements]}


def join_sentences(
    sentences: dict[str, Path],
    minutes: float,
    path: Path,
    *,
    seed: int = 9,
    pause_range: tuple[float, float] = (0.8, 4.0),
    long_pause_every: int = 7,
    long_pause_range: tuple[float, float] = (6.0, 12.0),
) -> LongFile:
    """A ``minutes``-long 16 kHz WAV of corpus sentences (``pcm16k`` files) separated by pauses, and where each is.

    Sentences follow in a seeded shuffled order, reshuffled after each pass. Pauses are mostly short (the VAD must
    join or split them sensibly), with a longer one every ``long_pause_every`` sentences on average (silence the
    VAD should skip). Cached: the manifest beside the WAV records the placements.
    """
    manifest_path = path.with_suffix(".json")
    if path.exists() and manifest_path.exists():
        data = json.loads(manifest_path.read_text())
        return LongFile(path, data["duration"], [Placement(**p) for p in data["placements"]])
    rng = random.Random(seed)
    ids = sorted(sentences)
    audio = {sid: read_wav_16k(sentences[sid]) for sid in ids}
    total = int(minutes * 60 * SAMPLE_RATE)
    out = np.zeros(total, dtype=np.float32)
    placements: list[Placement] = []
    at = int(rng.uniform(0.5, 2.0) * SAMPLE_RATE)
    order: list[str] = []
    while True:
        if not order:
            order = ids.copy()
            rng.shuffle(order)
        sid = order.pop()
        samples = audio[sid]
        if at + len(samples) > total:
            break
        out[at : at + len(samples)] = samples
        loud = np.flatnonzero(np.abs(samples) > 0.02)
        onset = float(at + (loud[0] if loud.size else 0)) / SAMPLE_RATE
        offset = float(at + (loud[-1] + 1 if loud.size else len(samples))) / SAMPLE_RATE
        placements.append(Placement(sid, round(onset, 3), round(offset, 3)))
        pause = rng.uniform(*long_pause_range) if rng.random() < 1 / long_pause_every else rng.uniform(*pause_range)
        at += len(samples) + int(pause * SAMPLE_RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav_16k(path, out)
    long_file = LongFile(path, total / SAMPLE_RATE, placements)
    manifest_path.write_text(json.dumps(long_file.manifest(), indent=1))
    return long_file


# --- Text normalisation for WER -------------------------------------------------------------------------------

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
_ONES += "seventeen eighteen nineteen"
ONES = _ONES.split()
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def number_words(n: int) -> str:
    """English cardinal for 0 <= n < 10**6, without "and" (as the corpus writes numbers)."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _digits(match: re.Match[str]) -> str:
    text = match.group(0)
    # A long run of digits is a phone or order number, said digit by digit; a short one is a quantity.
    if len(text) >= 3 and not (len(text) == 3 and text.endswith("00")):
        return " ".join(ONES[int(d)] for d in text)
    return number_words(int(text))


def _time(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute == 0:
        return number_words(hour)
    return f"{number_words(hour)} {'oh ' + ONES[minute] if minute < 10 else number_words(minute)}"


def normalize(text: str) -> str:
    """Lower-case words with numbers spelt as espeak-ng says them and punctuation gone, for WER."""
    text = text.lower()
    text = re.sub(r"\$(\d+)", r"\1 dollars", text).replace("%", " percent")
    text = re.sub(r"\b(\d{1,2})[:.](\d{2})\b", _time, text)  # 4:30, 4.30 -> four thirty
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: ordinal_words(int(m.group(1))), text)
    text = re.sub(r"\d+", _digits, text)
    text = re.sub(r"\s+'", "'", text)  # Whisper splits "o 'clock"
    text = text.replace("'", "").replace("\u2019", "")
    text = re.sub(r"[^\w\s]", " ", text)  # hyphens, commas, full stops...
    return " ".join(text.split())
