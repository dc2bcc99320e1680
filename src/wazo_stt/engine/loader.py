"""Build the engines the configuration asks for."""

from __future__ import annotations

from wazo_stt.config import Settings
from wazo_stt.engine.parakeet import ParakeetRecognizer
from wazo_stt.engine.pipeline import ChunkedEngine, ChunkPlanner
from wazo_stt.engine.registry import EngineRegistry
from wazo_stt.engine.vad import SpeechDetector


def chunk_planner(settings: Settings) -> ChunkPlanner:
    return ChunkPlanner(
        SpeechDetector() if settings.enable_vad else None,
        max_seconds=settings.chunk_max_secs,
        overlap_seconds=settings.chunk_overlap_secs,
    )


def load_engines(settings: Settings) -> EngineRegistry:
    """Load every configured model; raises ModelLoadError with a message fit for the operator."""
    parakeet = ParakeetRecognizer(
        settings.model_path,
        settings.model_name,
        quantization=settings.model_quantization,
        intra_op_threads=settings.intra_op_threads,
    )
    engine = ChunkedEngine(parakeet, chunk_planner(settings))
    return EngineRegistry([engine], default_id=engine.model_id)
