"""How many jobs run at once: WORKERS=auto from the cores, and the memory gate that holds a second job back.

The pool runs on a real store (SQLite, then PostgreSQL) and the real tiny engine; only the engine's
``transcribe`` is wrapped so a test can see which jobs are inside it at the same moment.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from tests.support.jobs import voicemail
from wazo_stt import host
from wazo_stt.config import Settings
from wazo_stt.domain import JobStatus
from wazo_stt.engine.loader import load_engines
from wazo_stt.host import at_once
from wazo_stt.jobs.background import BACKGROUND_NICENESS
from wazo_stt.jobs.concurrency import MemoryGate
from wazo_stt.jobs.records import NewJob
from wazo_stt.jobs.worker import WorkerPool


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 2), (16, 2)])
def test_auto_runs_two_jobs_at_once_from_two_cores(cores, expected):
    assert at_once("auto", cores) == expected


def test_a_number_of_workers_is_taken_as_given():
    assert [at_once(n, cores=2) for n in (0, 1, 3)] == [0, 1, 3]


def test_workers_is_auto_by_default_and_refuses_anything_but_a_count_or_auto(monkeypatch):
    monkeypatch.delenv("WORKERS", raising=False)
    assert Settings(_env_file=None).workers == "auto"
    for value, parsed in (("AUTO", "auto"), ("0", 0), (" 3 ", 3)):
        monkeypatch.setenv("WORKERS", value)
        assert Settings(_env_file=None).workers == parsed
    for bad in ("-1", "two", "1.5", ""):
        monkeypatch.setenv("WORKERS", bad)
        with pytest.raises(ValueError, match="a number of jobs"):
            Settings(_env_file=None)


class _Inside:
    """Wraps every engine's transcribe: records how many jobs are inside at once, holds them until released."""

    def __init__(self, registry) -> None:
        self.now = 0
        self.most = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        for engine in registry.engines:
            real = engine.transcribe

            def held(audio, language, progress=None, real=real):
                with self._lock:
                    self.now += 1
                    self.most = max(self.most, self.now)
                try:
                    assert self.release.wait(timeout=30)
                    return real(audio, language)
                finally:
                    with self._lock:
                        self.now -= 1

            engine.transcribe = held  # type: ignore[method-assign]

    async def wait_for(self, count: int) -> None:
        for _ in range(200):
            if self.now >= count:
                return
            await asyncio.sleep(0.02)


async def _three_jobs(store, registry) -> list[str]:
    return [
        (await store.submit(NewJob(voicemail(2.0 + i), 2.0 + i, registry.default_id, "json"))).job.id for i in range(3)
    ]


async def test_two_jobs_run_side_by_side_while_memory_allows(store, settings):
    registry = await asyncio.to_thread(load_engines, settings)
    inside = _Inside(registry)
    ids = await _three_jobs(store, registry)
    pool = WorkerPool(store, lambda: registry, workers=2, poll_seconds=0.05, memory_gate=MemoryGate(512, lambda: 4096))
    pool.start()
    try:
        await inside.wait_for(2)
        await asyncio.sleep(0.3)  # a third would have come in by now
        assert inside.now == 2
        inside.release.set()
        finished = [await pool.wait_finished(job_id, timeout=30) for job_id in ids]
    finally:
        inside.release.set()
        await pool.stop(grace_seconds=5)
    assert [job.status for job in finished] == [JobStatus.COMPLETED] * 3
    assert inside.most == 2


async def test_a_second_job_waits_while_memory_is_short_and_starts_when_it_is_back(store, settings):
    registry = await asyncio.to_thread(load_engines, settings)
    inside = _Inside(registry)
    available = {"mb": 300.0}
    ids = await _three_jobs(store, registry)
    pool = WorkerPool(
        store, lambda: registry, workers=2, poll_seconds=0.05, memory_gate=MemoryGate(512, lambda: available["mb"])
    )
    pool.start()
    try:
        await inside.wait_for(1)  # the first job is never held back
        await asyncio.sleep(0.5)
        assert inside.now == 1
        assert [(await store.get(job_id)).status for job_id in ids].count(JobStatus.QUEUED) == 2
        available["mb"] = 2048.0
        await inside.wait_for(2)
        assert inside.now == 2
        inside.release.set()
        finished = [await pool.wait_finished(job_id, timeout=30) for job_id in ids]
    finally:
        inside.release.set()
        await pool.stop(grace_seconds=5)
    assert [job.status for job in finished] == [JobStatus.COMPLETED] * 3


def test_the_gate_is_open_when_memory_is_unknown_or_the_reserve_is_zero():
    assert MemoryGate(512, lambda: None).allows_another()
    assert MemoryGate(0, lambda: 1.0).allows_another()
    assert not MemoryGate(512, lambda: 511.0).allows_another()


def test_cores_follow_a_containers_cpu_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "CGROUP", tmp_path)
    monkeypatch.setattr(host.os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert host.usable_cores() == 8  # no cgroup file: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert host.usable_cores() == 8
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # 2.5 cores
    assert host.usable_cores() == 2
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core still runs one job
    assert host.usable_cores() == 1


def test_available_memory_is_the_lower_of_the_machines_and_the_containers(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   8388608 kB\n")
    monkeypatch.setattr(host, "MEMINFO", meminfo)
    monkeypatch.setattr(host, "CGROUP", tmp_path / "cgroup")
    assert host.available_memory_mb() == 8192  # no cgroup: the machine's
    (tmp_path / "cgroup").mkdir()
    (tmp_path / "cgroup" / "memory.max").write_text(str(2 * 2**30))
    (tmp_path / "cgroup" / "memory.current").write_text(str(1536 * 2**20))
    (tmp_path / "cgroup" / "memory.stat").write_text(f"anon 1\ninactive_file {512 * 2**20}\n")
    # 2 GiB limit, 1.5 GiB used of which 0.5 GiB reclaimable page cache: 1 GiB left
    assert host.available_memory_mb() == 1024
    (tmp_path / "cgroup" / "memory.max").write_text("max")
    assert host.available_memory_mb() == 8192


def test_silero_runs_on_one_thread():
    """Per 32 ms window there is too little work for two threads: a second one only burns CPU (benchmarks)."""
    from wazo_stt.engine.vad import SpeechDetector

    options = SpeechDetector()._vad._model.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


@pytest.mark.skipif(sys.platform != "linux", reason="a niceness per thread is Linux's")
async def test_transcription_threads_run_nicer_than_the_event_loop(store, settings):
    """Status polls stay fast under load because the event loop's thread outranks the transcription threads."""
    registry = await asyncio.to_thread(load_engines, settings)
    seen: list[int] = []
    for engine in registry.engines:
        real = engine.transcribe

        def spy(audio, language, progress=None, real=real):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return real(audio, language)

        engine.transcribe = spy  # type: ignore[method-assign]
    job = (await store.submit(NewJob(voicemail(2.0), 2.0, registry.default_id, "json"))).job
    pool = WorkerPool(store, lambda: registry, workers=1, poll_seconds=0.05)
    pool.start()
    try:
        finished = await pool.wait_finished(job.id, timeout=30)
    finally:
        await pool.stop(grace_seconds=5)
    assert finished.status is JobStatus.COMPLETED
    assert seen == [min(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + BACKGROUND_NICENESS, 19)]
