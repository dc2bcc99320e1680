"""Purge old transcripts on a schedule (TEXT_RETENTION_DAYS), not only at start-up: servers run for months.

Every server runs the loop; the store lets one of them purge at a time (advisory lock on PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging

from wazo_stt.jobs.store import JobStore

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0


async def retention_loop(store: JobStore, days: int, interval: float = PURGE_INTERVAL_SECONDS) -> None:
    if days <= 0:
        return
    while True:
        try:
            purged = await store.purge_older_than(days)
            if purged:
                log.info("Purged %d transcripts older than %d days", purged, days)
        except Exception:
            log.exception("Retention purge failed; will retry")
        await asyncio.sleep(interval)
