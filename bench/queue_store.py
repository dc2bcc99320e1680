"""The job queue's own cost, on SQLite (synchronous FULL and NORMAL) and PostgreSQL: what a job costs the store
apart from transcription, and what a 100 MB upload costs the database.

    .venv/bin/python -m bench.queue_store [--jobs 200] [--depths 0,1000,10000]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Per job: ``submit`` (8 KB of audio), ``claim`` (claim_next), ``renew`` (one lease renewal with progress, which a
running job does once a second), ``position`` (a status poll's snapshot: the job with its queue position) and
``finish`` (complete with a small transcript), each timed alone, sequentially (median and p95 in ms), with the
queue already holding 0, 1 000 and 10 000 jobs (100 senders in 10 tenants): the fair queue sorts the queued jobs
at each claim and each position read, so its cost grows with the queue. Then one 100 MB upload: submit, the
worker's read of it, its deletion at completion; for PostgreSQL the WAL it wrote and the table's size on disk, for
SQLite the database file's and WAL's growth. Prints a table and writes ``bench/results/queue_store.{json,md}``.
PostgreSQL runs in a database of its own, dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.machine import machine_description
from wazo_stt.domain import JobStatus, Transcript
from wazo_stt.jobs.records import NewJob
from wazo_stt.jobs.schema import JobRow
from wazo_stt.jobs.store import JobStore

RESULTS = Path(__file__).with_name("results")
TRANSCRIPT = Transcript(text="hello world " * 20, language="en", duration=30.0, segments=[], words=[])
BIG_MB = 100


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
    }


async def _fill(store: JobStore, depth: int) -> None:
    """``depth`` queued jobs from 100 senders in 10 tenants, inserted in one transaction (not what is timed)."""
    async with store._db.writing() as session:
        for i in range(depth):
            session.add(
                JobRow(id=str(uuid.uuid4()), tenant=f"t{i % 10}", status=JobStatus.QUEUED, user_uuid=f"u{i % 100}",
                       model="m", response_format="json", granularities="", created_at=0.0, attempts=0)
            )


async def _per_depth(store: JobStore, jobs: int, depths: list[int]) -> dict[str, dict[str, dict[str, float]]]:
    """The per-job timings at each queue depth (ascending: the backlog is topped up between them)."""
    results, filled = {}, 0
    for depth in sorted(depths):
        await _fill(store, depth - filled)
        filled = depth
        results[str(depth)] = await _per_job(store, jobs, depth)
    return results


async def _per_job(store: JobStore, jobs: int, depth: int) -> dict[str, dict[str, float]]:
    timings: dict[str, list[float]] = {"submit": [], "claim": [], "renew": [], "position": [], "finish": []}
    audio = os.urandom(8192)
    store.max_queue_size = depth + 10
    for i in range(jobs):
        start = time.perf_counter()
        job = (await store.submit(NewJob(audio, 30.0, "m", "json", user_uuid="u", message_id=f"m{depth}-{i}"))).job
        timings["submit"].append(time.perf_counter() - start)
        start = time.perf_counter()
        snapshot = await store.snapshot(job.id)  # still queued: its position is computed
        timings["position"].append(time.perf_counter() - start)
        assert snapshot is not None and snapshot.queue_position is not None
        start = time.perf_counter()
        claimed = await store.claim_next("bench")
        timings["claim"].append(time.perf_counter() - start)
        assert claimed is not None and (depth or claimed.id == job.id)
        start = time.perf_counter()
        await store.renew(claimed.id, "bench", progress=0.5)
        timings["renew"].append(time.perf_counter() - start)
        start = time.perf_counter()
        assert await store.complete(claimed.id, "bench", TRANSCRIPT)
        timings["finish"].append(time.perf_counter() - start)
    result = {name: _ms(samples) for name, samples in timings.items()}
    both = [c + f for c, f in zip(timings["claim"], timings["finish"], strict=True)]
    result["claim+finish"] = _ms(both)
    return result


async def _big_upload(store: JobStore, measure) -> dict[str, float]:
    audio = os.urandom(BIG_MB * 1024 * 1024)  # compressed audio does not compress further; neither does this
    before = await measure()
    start = time.perf_counter()
    job = (await store.submit(NewJob(audio, 3600.0, "m", "json"))).job
    submit_s = time.perf_counter() - start
    during = await measure()
    await store.claim_next("bench")
    start = time.perf_counter()
    assert len(await store.audio(job.id)) == len(audio)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    await store.complete(job.id, "bench", TRANSCRIPT)
    delete_s = time.perf_counter() - start
    return {
        "submit_s": round(submit_s, 2),
        "read_s": round(read_s, 2),
        "delete_at_finish_s": round(delete_s, 2),
        **{f"{k}_mb": round((during[k] - before[k]) / 2**20, 1) for k in during},
    }


async def _postgres(admin_url: str, jobs: int, depths: list[int]) -> dict:
    import asyncpg

    name = f"wazo_stt_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    try:
        store = await JobStore.open(
            database_url=url.replace("postgresql://", "postgresql+asyncpg://"), max_queue_size=10**6
        )
        conn = await asyncpg.connect(url)
        try:
            per_job = await _per_depth(store, jobs, depths)

            async def measure() -> dict[str, float]:
                wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
                size = await conn.fetchval("SELECT pg_total_relation_size('job_audio')")
                return {"wal_written": float(wal), "job_audio_size": float(size)}

            big = await _big_upload(store, measure)
        finally:
            await conn.close()
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {"per_job": per_job, "upload_100mb": big}


async def _sqlite(synchronous: str, jobs: int, depths: list[int]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db"
        store = await JobStore.open(db_path=db, max_queue_size=10**6, sqlite_synchronous=synchronous)
        try:
            per_job = await _per_depth(store, jobs, depths)

            async def measure() -> dict[str, float]:
                wal = db.with_name("jobs.db-wal")
                return {
                    "db_file": float(db.stat().st_size),
                    "wal_file": float(wal.stat().st_size if wal.exists() else 0),
                }

            big = await _big_upload(store, measure)
        finally:
            await store.close()
    return {"per_job": per_job, "upload_100mb": big}


def _table(results: dict) -> str:
    ops = ["submit", "claim", "renew", "position", "finish", "claim+finish"]
    lines = [
        "| store | jobs queued | " + " | ".join(f"{op} ms (median / p95)" for op in ops) + " |",
        "|---|---|" + "---|" * len(ops),
    ]
    for name, r in results.items():
        for depth, timings in r["per_job"].items():
            cells = [f"{timings[op]['median_ms']} / {timings[op]['p95_ms']}" for op in ops]
            lines.append(f"| {name} | {int(depth):,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| store | 100 MB upload: submit s | worker's read s | delete at finish s | growth |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        big = r["upload_100mb"]
        growth = ", ".join(f"{k.removesuffix('_mb')} +{v} MB" for k, v in big.items() if k.endswith("_mb"))
        lines.append(f"| {name} | {big['submit_s']} | {big['read_s']} | {big['delete_at_finish_s']} | {growth} |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--depths", default="0,1000,10000", help="jobs already queued, comma-separated")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    results = {
        "sqlite (synchronous=FULL, default)": await _sqlite("FULL", args.jobs, depths),
        "sqlite (synchronous=NORMAL)": await _sqlite("NORMAL", args.jobs, depths),
        "postgresql 15 (local, asyncpg)": await _postgres(args.postgres, args.jobs, depths),
    }
    table = _table(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    machine = machine_description()
    (RESULTS / "queue_store.json").write_text(
        json.dumps({"machine": machine, "jobs": args.jobs, "depths": depths, "results": results}, indent=2)
    )
    (RESULTS / "queue_store.md").write_text(f"{table}\n")


if __name__ == "__main__":
    asyncio.run(main())
