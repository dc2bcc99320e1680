"""The engines this server runs, by model id, and what an omitted ``model`` or ``whisper-1`` means."""

from __future__ import annotations

from collections.abc import Iterable

from wazo_stt.engine.base import Engine

OPENAI_ALIAS = "whisper-1"


class UnknownModelError(LookupError):
    pass


class EngineRegistry:
    def __init__(
        self,
        engines: Iterable[Engine],
        default_id: str | None = None,
        not_loaded: dict[str, str] | None = None,
        fallback: str | None = None,
    ) -> None:
        self._engines = {e.model_id: e for e in engines}
        # Engine family -> why it failed to load, while the others serve: an operator must see it in /health.
        self.not_loaded = dict(not_loaded or {})
        # Set while the embedded Whisper tiny.en stands in for a model that is not there yet: the notice to show.
        self.fallback = fallback
        if not self._engines:
            raise ValueError("at least one engine is required")
        self.default_id = default_id or next(iter(self._engines))
        if self.default_id not in self._engines:
            raise ValueError(f"default model {self.default_id!r} is not loaded")

    @property
    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def model_ids(self) -> list[str]:
        return [*self._engines, OPENAI_ALIAS]

    def resolve(self, name: str | None) -> Engine:
        """The engine for a request's ``model`` field (empty or ``whisper-1``: the default one)."""
        if not name or name == OPENAI_ALIAS:
            return self._engines[self.default_id]
        try:
            return self._engines[name]
        except KeyError:
            raise UnknownModelError(
                f"Model '{name}' does not exist. Available models: {', '.join(self.model_ids())}"
            ) from None
