"""Switch from the embedded fallback to Parakeet as soon as its files are there, without a restart.

While the embedded Whisper tiny.en stands in (see ``engine.loader``), the model directory is looked at every few
seconds; once ``wazo-stt download-model`` (or a copy by hand) has put every required file there, the engines are
loaded again off the event loop and swapped in. Jobs already running finish on the engine they started with;
the next ones get Parakeet. A load that still fails (a half-copied file) is retried at the next look.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from wazo_stt.api.state import ServerState
from wazo_stt.config import Settings
from wazo_stt.engine.registry import EngineRegistry
from wazo_stt.jobs.background import in_background_thread
from wazo_stt.models.catalog import missing_files

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECS = 5.0


async def reload_when_model_arrives(state: ServerState, engine_loader: Callable[[Settings], EngineRegistry]) -> None:
    settings = state.settings
    interval = CHECK_INTERVAL_SECS
    if not settings.enable_parakeet:
        return
    while True:
        await asyncio.sleep(interval)
        registry = state.registry
        if registry is None and state.load_error is None:
            continue  # the first load is still running
        if registry is not None and not registry.fallback:
            return  # Parakeet is served: nothing left to watch
        if missing_files(settings.model_path, settings.model_quantization):
            continue
        log.info("Parakeet's files appeared in %s: loading them", settings.model_path)
        try:
            new = await in_background_thread(engine_loader, settings, name="wazo-stt-load")
        except Exception as exc:
            log.warning("Could not load the new model yet (%s); retrying in %.0f s", exc, interval)
            continue
        if new.fallback:
            log.warning("Parakeet still does not load; keeping %s", new.default_id)
            await asyncio.sleep(interval * 5)  # the same files would fail the same way: look less often
            continue
        state.registry, state.load_error = new, None
        log.info("Switched to %s", ", ".join(new.model_ids()))
        state.workers.notify()
        return
