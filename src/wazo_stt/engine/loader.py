"""Build the engines the configuration asks for.

The rules, so an operator can predict what a configuration serves:

* Parakeet is loaded from ``MODEL_PATH`` unless ``ENABLE_PARAKEET=false`` (a Whisper-only server says so
  explicitly, rather than Parakeet being skipped because a directory happens to be empty).
* Whisper is loaded when ``WHISPER_MODEL_PATH`` is set.
* Every configured engine is tried; the server starts when at least one loads (a failure of the other is logged).
  None loading is a ModelLoadError that lists every failure, so one restart fixes them all.
* ``DEFAULT_MODEL`` (a model id, or ``parakeet`` / ``whisper``) is what ``whisper-1`` and an omitted ``model``
  mean; by default Parakeet when it loaded, else Whisper. A default that names an engine which failed to load
  is an error too: silently answering ``whisper-1`` with another model would surprise every client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from wazo_stt.config import Settings
from wazo_stt.engine.base import ChunkRecognizer, ModelLoadError
from wazo_stt.engine.pipeline import ChunkedEngine, ChunkPlanner
from wazo_stt.engine.registry import EngineRegistry
from wazo_stt.engine.vad import SpeechDetector

log = logging.getLogger(__name__)

DEFAULT_MAX_CHUNK_SECONDS = 30.0

PARAKEET = "parakeet"
WHISPER = "whisper"


def chunk_planner(
    settings: Settings, detector: SpeechDetector | None = None, recognizer: ChunkRecognizer | None = None
) -> ChunkPlanner:
    """The planner for one engine; ``detector`` lets engines share one VAD model (it keeps no state per call).

    A recogniser may set ``join_gap_seconds``: how long a pause between speech spans may be and still be sent
    inside one chunk (Whisper pads every chunk to 30 s, so it prefers fewer, fuller chunks),
    ``kept_pause_seconds``: how much of such a pause is sent, and ``max_chunk_seconds``: the longest chunk it is
    best at, used unless CHUNK_MAX_SECS is set.
    """
    if settings.enable_vad and detector is None:
        detector = SpeechDetector()
    options = {
        name: float(value)
        for name in ("join_gap_seconds", "kept_pause_seconds")
        if (value := getattr(recognizer, name, None)) is not None
    }
    return ChunkPlanner(
        detector if settings.enable_vad else None,
        max_seconds=settings.chunk_max_secs or getattr(recognizer, "max_chunk_seconds", DEFAULT_MAX_CHUNK_SECONDS),
        overlap_seconds=settings.chunk_overlap_secs,
        **options,
    )


def load_parakeet(settings: Settings) -> ChunkRecognizer:
    from wazo_stt.engine.parakeet import ParakeetRecognizer

    return ParakeetRecognizer(
        settings.model_path,
        settings.model_name,
        quantization=settings.model_quantization,
        intra_op_threads=settings.intra_op_threads,
    )


def load_whisper(settings: Settings) -> ChunkRecognizer:
    from wazo_stt.engine.whisper import WhisperRecognizer

    assert settings.whisper_model_path is not None
    return WhisperRecognizer(
        settings.whisper_model_path,
        settings.whisper_model_id or None,
        beam_size=settings.whisper_beam_size,
        cpu_threads=settings.intra_op_threads,
    )


def configured_families(settings: Settings) -> dict[str, Callable[[Settings], ChunkRecognizer]]:
    """Engine family -> loader, in order of preference for the default model."""
    families: dict[str, Callable[[Settings], ChunkRecognizer]] = {}
    if settings.enable_parakeet:
        families[PARAKEET] = load_parakeet
    if settings.whisper_model_path is not None:
        families[WHISPER] = load_whisper
    return families


def load_engines(settings: Settings) -> EngineRegistry:
    """Load every configured model; raises ModelLoadError with a message fit for the operator."""
    families = configured_families(settings)
    if not families:
        raise ModelLoadError(
            "No speech engine is configured: ENABLE_PARAKEET=false and WHISPER_MODEL_PATH is empty. "
            "Enable Parakeet (MODEL_PATH) or set WHISPER_MODEL_PATH."
        )
    loaded: dict[str, ChunkRecognizer] = {}
    failures: dict[str, str] = {}
    for family, load in families.items():
        try:
            loaded[family] = load(settings)
        except ModelLoadError as exc:
            failures[family] = str(exc)
    if not loaded:
        raise ModelLoadError(
            "No speech engine could be loaded. "
            + " ".join(f"{family}: {why.rstrip('.')}." for family, why in failures.items())
        )
    for family, why in failures.items():
        log.error("%s engine not loaded (serving %s only): %s", family, ", ".join(loaded), why)

    default_id = _default_model_id(settings.default_model.strip(), loaded, failures)
    detector = SpeechDetector() if settings.enable_vad else None  # one VAD model for every engine
    engines = [ChunkedEngine(r, chunk_planner(settings, detector, r)) for r in loaded.values()]
    return EngineRegistry(engines, default_id=default_id, not_loaded=failures)


def _default_model_id(wanted: str, loaded: dict[str, ChunkRecognizer], failures: dict[str, str]) -> str:
    if not wanted:
        return next(iter(loaded.values())).model_id  # families are in order of preference
    if wanted.lower() in loaded:
        return loaded[wanted.lower()].model_id
    if wanted.lower() in failures:
        raise ModelLoadError(f"DEFAULT_MODEL={wanted} but that engine did not load: {failures[wanted.lower()]}")
    ids = [r.model_id for r in loaded.values()]
    if wanted in ids:
        return wanted
    raise ModelLoadError(
        f"DEFAULT_MODEL={wanted} is not a loaded model; choose one of {', '.join([*ids, PARAKEET, WHISPER])}"
        + (f" (not loaded: {'; '.join(f'{f}: {why}' for f, why in failures.items())})" if failures else "")
    )
