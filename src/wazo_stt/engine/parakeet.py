"""NVIDIA Parakeet TDT through onnx-asr and ONNX Runtime (the istupakov int8 ONNX export)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx_asr
import onnxruntime as ort

from wazo_stt.domain import Transcript, Word
from wazo_stt.engine.base import ModelLoadError
from wazo_stt.engine.chunking import fixed_chunks, words_owned
from wazo_stt.engine.segments import build_segments
from wazo_stt.engine.words import RecognizedWord, assemble_words

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000

# Languages of Parakeet TDT 0.6B v3 (its model card); v2 is English only.
V3_LANGUAGES = frozenset(
    {"bg", "hr", "cs", "da", "nl", "en", "et", "fi", "fr", "de", "el", "hu", "it"}
    | {"lv", "lt", "mt", "pl", "pt", "ro", "sk", "sl", "es", "sv", "ru", "uk"}
)
PARAKEET_MODELS: dict[str, tuple[str, frozenset[str]]] = {
    # our model id: (onnx-asr model name, languages)
    "parakeet-tdt-0.6b-v3": ("nemo-parakeet-tdt-0.6b-v3", V3_LANGUAGES),
    "parakeet-tdt-0.6b-v2": ("nemo-parakeet-tdt-0.6b-v2", frozenset({"en"})),
}


def model_files(quantization: str) -> list[str]:
    """Files of the istupakov layout that must be present (the mel front end ships inside onnx-asr)."""
    suffix = f".{quantization}" if quantization else ""
    return [f"encoder-model{suffix}.onnx", f"decoder_joint-model{suffix}.onnx", "vocab.txt", "config.json"]


def _load_vocab(path: Path) -> dict[str, int]:
    # Same normalisation as onnx-asr, which reports pieces with "▁" turned into a space.
    vocab: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line:
            piece, index = line.rsplit(" ", 1)
            vocab[piece.replace("\u2581", " ")] = int(index)
    return vocab


class ParakeetEngine:
    owned_by = "nvidia"

    def __init__(
        self,
        model_dir: Path,
        model_id: str = "parakeet-tdt-0.6b-v3",
        *,
        quantization: str = "int8",
        intra_op_threads: int = 0,
        chunk_seconds: float = 30.0,
        overlap_seconds: float = 2.0,
    ) -> None:
        if model_id not in PARAKEET_MODELS:
            raise ModelLoadError(f"Unknown Parakeet model {model_id!r}; choose one of {sorted(PARAKEET_MODELS)}")
        self.model_id = model_id
        onnx_asr_name, self.languages = PARAKEET_MODELS[model_id]
        self._chunk_seconds = chunk_seconds
        self._overlap_seconds = overlap_seconds
        model_dir = Path(model_dir)
        missing = [f for f in model_files(quantization) if not (model_dir / f).is_file()]
        if missing:
            raise ModelLoadError(
                f"Parakeet model not found in {model_dir} (missing: {', '.join(missing)}). "
                f"Download it with `wazo-stt download-model --model {model_id} --dir {model_dir}` "
                "(Docker: `docker compose --profile setup run model-downloader`), or set MODEL_PATH."
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        try:
            model = onnx_asr.load_model(
                onnx_asr_name,
                model_dir,
                quantization=quantization or None,
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnx-asr and ONNX Runtime raise many types for a broken file
            raise ModelLoadError(f"Could not load the Parakeet model from {model_dir}: {exc}") from exc
        self._model = model.with_timestamps()
        self._vocab = _load_vocab(model_dir / "vocab.txt")
        log.info("Loaded %s from %s", model_id, model_dir)

    def transcribe(self, audio: np.ndarray, language: str | None) -> Transcript:
        duration = len(audio) / SAMPLE_RATE
        words: list[RecognizedWord] = []
        for chunk in fixed_chunks(len(audio), SAMPLE_RATE, self._chunk_seconds, self._overlap_seconds):
            result = self._model.recognize(audio[chunk.start : chunk.end], sample_rate=SAMPLE_RATE)
            chunk_words = assemble_words(
                result.tokens or [],
                result.timestamps or [],
                result.logprobs,
                [self._vocab.get(t, -1) for t in result.tokens or []],
                offset=chunk.start / SAMPLE_RATE,
                limit=chunk.end / SAMPLE_RATE,
            )
            words.extend(words_owned(chunk_words, chunk))
        return Transcript(
            text=" ".join(w.word for w in words),
            language=language or ("en" if self.languages == {"en"} else "auto"),
            duration=round(duration, 3),
            segments=build_segments(words),
            words=[Word(w.word, round(w.start, 3), round(w.end, 3), w.mean_logprob) for w in words],
        )
