"""NVIDIA Parakeet TDT through onnx-asr and ONNX Runtime (the istupakov int8 ONNX export)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx_asr

from wazo_stt.domain import SAMPLE_RATE
from wazo_stt.engine.base import ModelLoadError
from wazo_stt.engine.prepared import parakeet_dir
from wazo_stt.engine.runtime import session_options
from wazo_stt.engine.words import RecognizedWord, assemble_words
from wazo_stt.heap import release_freed_memory
from wazo_stt.models.catalog import PARAKEET_MODELS, model_files

log = logging.getLogger(__name__)


def _load_vocab(path: Path) -> dict[str, int]:
    # Same normalisation as onnx-asr, which reports pieces with "▁" turned into a space.
    vocab: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line:
            piece, index = line.rsplit(" ", 1)
            vocab[piece.replace("\u2581", " ")] = int(index)
    return vocab


class ParakeetRecognizer:
    """Recognises one chunk; Parakeet detects the language itself (the ``language`` field is not an input)."""

    owned_by = "nvidia"
    # Measured on a 20-minute call recording (docs/benchmarks.md): chunks of at most 20 s instead of 30 s ran 8-10%
    # faster (attention grows with the square of the length) and peaked 200 MB lower; onnx-asr's own VAD
    # pipeline cuts at 20 s too. Cuts fall in pauses, so the model still sees whole phrases.
    max_chunk_seconds = 20.0
    # Two ONNX Runtime calls on one session run side by side, and together keep 2 cores busy where one keeps 1.6:
    # a recording's next chunk may start beside the current one (engine/parallel.py). CTranslate2's Whisper,
    # loaded with one worker, runs calls one at a time, so it does not say so.
    parallel_chunks = True

    def __init__(
        self,
        model_dir: Path,
        model_id: str = "parakeet-tdt-0.6b-v3",
        *,
        quantization: str = "int8",
        intra_op_threads: int = 0,
        float_convs: bool = True,
    ) -> None:
        if model_id not in PARAKEET_MODELS:
            raise ModelLoadError(f"Unknown Parakeet model {model_id!r}; choose one of {sorted(PARAKEET_MODELS)}")
        self.model_id = model_id
        entry = PARAKEET_MODELS[model_id]
        onnx_asr_name, self.languages = entry.onnx_asr_name, entry.languages
        model_dir = Path(model_dir)
        missing = [f for f in model_files(quantization) if not (model_dir / f).is_file()]
        if missing:
            raise ModelLoadError(
                f"Parakeet model not found in {model_dir} (missing: {', '.join(missing)}). "
                f"Download it with `wazo-stt download-model --model {model_id} --dir {model_dir}` "
                "(Docker: `docker compose --profile setup run --rm model-downloader`), or set MODEL_PATH."
            )
        # How many of the encoder's int8 convolutions run as float ones, with the same output (engine/prepared.py).
        self.float_convs = 0
        if float_convs and quantization:
            model_dir, self.float_convs = parakeet_dir(model_dir, model_files(quantization)[0])
        try:
            model = onnx_asr.load_model(
                onnx_asr_name,
                model_dir,
                quantization=quantization or None,
                sess_options=session_options(intra_op_threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnx-asr and ONNX Runtime raise many types for a broken file
            raise ModelLoadError(f"Could not load the Parakeet model from {model_dir}: {exc}") from exc
        self._model = model.with_timestamps()
        self._vocab = _load_vocab(model_dir / "vocab.txt")
        release_freed_memory()  # what ONNX Runtime read the model files into
        log.info("Loaded %s from %s", model_id, model_dir)

    def recognize(self, chunk: np.ndarray, language: str | None) -> list[RecognizedWord]:
        result = self._model.recognize(chunk, sample_rate=SAMPLE_RATE)
        tokens = result.tokens or []
        return assemble_words(
            tokens,
            result.timestamps or [],
            result.logprobs,
            [self._vocab.get(t, -1) for t in tokens],
            offset=0.0,
            limit=len(chunk) / SAMPLE_RATE,
        )

    def language_label(self, language: str | None) -> str:
        if language:
            return language
        return "en" if self.languages == {"en"} else "auto"
