"""Crash recovery: the real server, killed with ``kill -9`` mid-work, loses no accepted job and does none twice.

The server runs as a process of its own (``tests/support/server_main.py``), each transcription slowed down so a
job is reliably ``processing`` when the kill comes. What the database holds is checked directly with sqlite3, as
an operator would, and a journal written by the engine wrapper counts how many times each job was transcribed.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.support.jobs import TEXT, TRANSCRIPTIONS, journal_events, status, submit, voicemail, wait_until
from tests.support.processes import db_rows, server_env, server_process

MAX_ATTEMPTS = 3  # wazo_stt.jobs.leases.MAX_ATTEMPTS


def test_kill_9_with_jobs_queued_and_processing_loses_nothing_and_repeats_nothing(tmp_path, tiny_model_dir):
    db = tmp_path / "data" / "jobs.db"
    journal = tmp_path / "journal.txt"
    env = server_env(tiny_model_dir, db, wazo_test_journal=journal)
    with server_process(env, tmp_path / "server.log") as server, httpx.Client(base_url=server.url) as client:
        server.start(WAZO_TEST_DELAY="10")  # the first job is still running at the kill
        async_ids = {f"m{i}": submit(client, f"m{i}", 3.0 + 0.1 * i) for i in range(4)}
        # Two OpenAI-style synchronous requests, waiting for their jobs when the server dies.
        sync_errors: list[BaseException] = []

        def synchronous(seconds: float) -> None:
            try:
                client_sync = httpx.Client(base_url=server.url, timeout=60)
                client_sync.post(TRANSCRIPTIONS, files={"file": ("a.wav", voicemail(seconds))})
            except httpx.TransportError as exc:  # the connection dies with the server: expected
                sync_errors.append(exc)

        threads = [threading.Thread(target=synchronous, args=(s,)) for s in (4.0, 4.1)]
        for thread in threads:
            thread.start()
        wait_until(lambda: client.get("/health").json()["db_stats"]["total"] == 6, what="6 jobs accepted")
        wait_until(lambda: status(client, async_ids["m0"]) == "processing")

        server.kill()
        for thread in threads:
            thread.join(timeout=10)
        assert len(sync_errors) == 2

        # What the dead server left: one job processing (attempt 1), five queued, every job's audio kept.
        assert db_rows(db, "SELECT status, attempts, COUNT(*) FROM jobs GROUP BY status, attempts ORDER BY 1") == [
            ("processing", 1, 1),
            ("queued", 0, 5),
        ]
        assert db_rows(db, "SELECT COUNT(*) FROM job_audio") == [(6,)]

        server.start(WAZO_TEST_DELAY="0")
        wait_until(lambda: client.get("/health").json()["db_stats"]["pending"] == 0, what="every job done")

        assert db_rows(db, "SELECT status, attempts, COUNT(*) FROM jobs GROUP BY status, attempts ORDER BY 2") == [
            ("completed", 1, 5),
            ("completed", 2, 1),  # the interrupted one: re-queued once, its attempts counted
        ]
        assert db_rows(db, "SELECT id FROM jobs WHERE attempts = 2") == [(async_ids["m0"],)]
        for message_id, job_id in async_ids.items():
            lookup = client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u", "message_id": message_id})
            assert lookup.json()["job_id"] == job_id and lookup.json()["text"] == TEXT
        assert db_rows(db, "SELECT COUNT(*) FROM jobs WHERE user_uuid = 'u'") == [(4,)]  # one row per voicemail
        assert db_rows(db, "SELECT COUNT(*) FROM job_audio") == [(0,)]  # audio of finished jobs is deleted
        assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]

    # Exactly once: each of the 6 recordings transcribed to the end once; only the killed one started twice.
    events = journal_events(journal)
    ends = {k: n for k, n in events.items() if k.startswith("end")}
    assert ends == {f"end {s:.2f}": 1 for s in (3.0, 3.1, 3.2, 3.3, 4.0, 4.1)}
    assert events["start 3.00"] == 2
    assert sum(n for k, n in events.items() if k.startswith("start")) == 7


@pytest.mark.slow
def test_a_job_that_kills_the_server_every_time_ends_failed_with_the_reason(tmp_path, tiny_model_dir):
    """A poisoned voicemail (one that makes the process die, as an out-of-memory kill would) must not crash the
    server forever: after MAX_ATTEMPTS deaths it is failed with the reason, and the jobs behind it run."""
    db = tmp_path / "data" / "jobs.db"
    journal = tmp_path / "journal.txt"
    env = server_env(tiny_model_dir, db, wazo_test_journal=journal, wazo_test_crash_on_seconds=4.5)
    with server_process(env, tmp_path / "server.log") as server, httpx.Client(base_url=server.url) as client:
        server.start(WAZO_TEST_DELAY="3")  # holds the first job while the others are queued behind it
        before = submit(client, "before", 3.0)
        poisoned = submit(client, "poison", 4.5)
        behind = submit(client, "behind", 3.1)
        for death in range(1, MAX_ATTEMPTS + 1):
            assert server.wait(timeout=30) == -9, server.log()  # as the supervisor sees it: killed
            assert db_rows(db, "SELECT status, attempts FROM jobs WHERE id = ?", (poisoned,)) == [("processing", death)]
            if death < MAX_ATTEMPTS:
                server.start(ready=False)  # what `restart: unless-stopped` does
        server.start()
        wait_until(lambda: status(client, behind) == "completed")
        assert status(client, before) == "completed"
        # The last death's lease expires LEASE_SECS after it: then the next claim fails the job for good.
        wait_until(lambda: status(client, poisoned) == "failed", what="the poisoned job failed")

        failed = client.get(f"{TRANSCRIPTIONS}/{poisoned}").json()
        assert failed["status"] == "failed"
        assert failed["error"] == f"The server stopped while transcribing this job {MAX_ATTEMPTS} times; giving up"
        lookup = client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u", "message_id": "poison"}).json()
        assert lookup["status"] == "failed" and "giving up" in lookup["error"]
        assert db_rows(db, "SELECT COUNT(*) FROM job_audio") == [(0,)]
        assert db_rows(db, "SELECT COUNT(*) FROM jobs WHERE status = 'processing'") == [(0,)]
        assert server.process is not None and server.process.poll() is None  # alive and well
    assert journal_events(journal)["start 4.50"] == MAX_ATTEMPTS
    assert journal_events(journal)["end 3.00"] == journal_events(journal)["end 3.10"] == 1
