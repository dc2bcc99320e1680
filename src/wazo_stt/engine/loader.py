"""Build the engines the configuration asks for."""

from __future__ import annotations

from wazo_stt.config import Settings
from wazo_stt.engine.parakeet import ParakeetEngine
from wazo_stt.engine.registry import EngineRegistry


def load_engines(settings: Settings) -> EngineRegistry:
    """Load every configured model; raises ModelLoadError with a message fit for the operator."""
    parakeet = ParakeetEngine(
        settings.model_path,
        settings.model_name,
        quantization=settings.model_quantization,
        intra_op_threads=settings.intra_op_threads,
    )
    return EngineRegistry([parakeet], default_id=parakeet.model_id)
