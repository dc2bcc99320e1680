"""What an erasure costs (``DELETE /v1/audio/transcriptions/{id}``): the row's deletion plus the scrubbing of the
database files, on SQLite (secure_delete + a TRUNCATE WAL checkpoint) and PostgreSQL (a plain VACUUM of the job
tables), for a jobs table of several sizes; and, for PostgreSQL, what the strict ``VACUUM FULL jobs`` an operator
may run off-hours costs (it locks the table meanwhile).

    .venv/bin/python -m bench.erasure [--rows 2000 20000] [--deletes 20] [--postgres postgresql://postgres@127.0.0.1/postgres]

Each table is filled with finished jobs (a ~2 KB transcript each, random text so that nothing compresses away),
then ``--deletes`` jobs are deleted one after the other through ``JobStore.delete`` (median and p95 in ms), and the
scrubbing step alone (``Database.erase_traces``) is timed as often. Prints a table and writes
``bench/results/erasure.{json,md}``. PostgreSQL runs in a database of its own, dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from bench.machine import machine_description
from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.jobs.convert import transcript_to_json
from wazo_stt.jobs.schema import JobRow
from wazo_stt.jobs.store import JobStore

RESULTS = Path(__file__).with_name("results")


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[max(int(len(ordered) * 0.95) - 1, 0)] * 1000, 1),
    }


async def _fill(store: JobStore, rows: int) -> list[str]:
    """Insert ``rows`` finished jobs in batches (the store's own session: this measures deletion, not submit)."""
    ids = []
    for start in range(0, rows, 1000):
        batch = []
        for i in range(start, min(start + 1000, rows)):
            words = secrets.token_urlsafe(1500)
            transcript = Transcript(text=words, language="en", duration=30.0, segments=[], words=[])
            job_id = str(uuid.uuid4())
            ids.append(job_id)
            batch.append(
                JobRow(
                    id=job_id,
                    tenant="bench",
                    status=JobStatus.COMPLETED,
                    user_uuid="u",
                    message_id=f"m{i}",
                    model="m",
                    response_format="json",
                    granularities="",
                    created_at=time.time(),
                    finished_at=time.time(),
                    attempts=1,
                    audio_duration=30.0,
                    text=words,
                    transcript=await transcript_to_json(transcript),
                )
            )
        async with store._db.writing() as session:
            session.add_all(batch)
    return ids


async def _measure(url: str, rows: int, deletes: int) -> dict:
    store = await JobStore.open(database_url=url, max_queue_size=10)
    try:
        ids = await _fill(store, rows)
        delete_times, scrub_times = [], []
        for job_id in ids[:deletes]:
            start = time.perf_counter()
            assert await store.delete(job_id) is not None
            delete_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            await store._db.erase_traces()
            scrub_times.append(time.perf_counter() - start)
        result = {"rows": rows, "delete": _ms(delete_times), "scrub_alone": _ms(scrub_times)}
        if store.dialect == "postgresql":
            async with store._db.writer.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                start = time.perf_counter()
                await auto.execute(text("VACUUM FULL jobs"))
                result["vacuum_full_s"] = round(time.perf_counter() - start, 2)
        return result
    finally:
        await store.close()


async def _postgres_database(admin_url: str, name: str, create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        sql = f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        await conn.execute(sql)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--deletes", type=int, default=20)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            results.append({"dialect": "sqlite", **await _measure(f"sqlite:///{tmp}/jobs.db", rows, args.deletes)})
        name = f"bench_erasure_{uuid.uuid4().hex[:8]}"
        await _postgres_database(args.postgres, name, create=True)
        try:
            url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
            results.append({"dialect": "postgresql", **await _measure(url, rows, args.deletes)})
        finally:
            await _postgres_database(args.postgres, name, create=False)

    machine = machine_description()
    lines = [
        f"Erasure cost, {args.deletes} deletions per table one after the other "
        f"({machine['logical_cpus']} CPUs, load average {machine['load_average'][0]} at the end).",
        "",
        "| dialect | jobs in table | delete + scrub (median / p95 ms) | scrub alone (median / p95 ms) "
        "| VACUUM FULL jobs (s) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        full = r.get("vacuum_full_s", "n/a")
        lines.append(
            f"| {r['dialect']} | {r['rows']} | {r['delete']['median_ms']} / {r['delete']['p95_ms']} "
            f"| {r['scrub_alone']['median_ms']} / {r['scrub_alone']['p95_ms']} | {full} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "erasure.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    (RESULTS / "erasure.md").write_text(table + "\n")


if __name__ == "__main__":
    asyncio.run(main())
