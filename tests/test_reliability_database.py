"""The database refusing writes, for real: locked by another process past the busy timeout, or the disk full.

What must hold: a submission that cannot be written gets a 503 in OpenAI's shape (with Retry-After) and nothing
half-done; every job accepted before stays and completes once the database is back; the worker survives the
failed writes of a job's result (it keeps the transcript and retries) and goes on with the queue.
"""

from __future__ import annotations

import contextlib
import resource
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gate import Gate
from tests.support.jobs import TEXT, TRANSCRIPTIONS, journal_events, status, submit, voicemail, wait_until
from tests.support.processes import db_rows, server_env, server_process
from tests.support.server import running_server, wait_ready


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": {
            "message": "The job database is temporarily unavailable; retry later",
            "type": "server_error",
            "param": None,
            "code": "database_unavailable",
        }
    }
    assert int(response.headers["retry-after"]) > 0


@contextlib.contextmanager
def write_lock(db_path: Path) -> Iterator[None]:
    """Hold SQLite's write lock from another connection, as a second process (a backup, a migration) would."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_database_locked_past_the_busy_timeout(settings):
    settings.db_busy_timeout_ms = 200
    gate = Gate()
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_ready(client)
        running = submit(client, "running")
        wait_until(lambda: status(client, running) == "processing")
        waiting = submit(client, "waiting")

        with write_lock(settings.db_path):
            started = time.monotonic()
            assert_database_unavailable(
                client.post(
                    TRANSCRIPTIONS,
                    files={"file": ("vm.wav", voicemail())},
                    data={"user_uuid": "u"} | {"message_id": "refused"},
                )
            )
            assert time.monotonic() - started < 5  # the busy timeout, not a hang
            assert_database_unavailable(client.post(TRANSCRIPTIONS, files={"file": ("a.wav", voicemail())}))
            # Reads go on (WAL): status polls and /health answer while writes are refused.
            assert client.get("/health").json()["db_stats"]["total"] == 2
            # The running job finishes; storing its result fails and is retried, the job stays processing.
            gate.release.release()
            time.sleep(1.0)
            assert status(client, running) == "processing" and status(client, waiting) == "queued"

        gate.release.release()
        wait_until(lambda: status(client, waiting) == "completed", what="the queue moves again")
        assert client.get(f"{TRANSCRIPTIONS}/{running}").json()["text"] == TEXT
        lookup = client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u", "message_id": "refused"})
        assert lookup.json() == {"found": False}  # the refused submission left nothing behind
        gate.release.release()
        assert submit(client, "refused")  # and can simply be sent again
        assert client.get("/health").json()["db_stats"]["total"] == 3


@pytest.mark.slow
def test_disk_full(tmp_path, tiny_model_dir):
    """The server process gets a file-size limit of 0 (``prlimit``): every write to a file fails (EFBIG), as on a
    full disk (ENOSPC); SQLite says "disk I/O error"."""
    db = tmp_path / "data" / "jobs.db"
    journal = tmp_path / "journal.txt"
    env = server_env(tiny_model_dir, db, wazo_test_journal=journal)
    with (
        server_process(env, tmp_path / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        server.start(WAZO_TEST_DELAY="2")
        running = submit(client, "running", 3.0)
        wait_until(lambda: status(client, running) == "processing")
        waiting = submit(client, "waiting", 3.1)

        unlimited = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (0, unlimited[1]))
        try:
            assert_database_unavailable(
                client.post(
                    TRANSCRIPTIONS,
                    files={"file": ("vm.wav", voicemail(3.2))},
                    data={"user_uuid": "u"} | {"message_id": "refused"},
                )
            )
            # An upload big enough to be spooled to a temporary file fails earlier, on that file: also a 503.
            big = client.post(TRANSCRIPTIONS, files={"file": ("big.wav", voicemail(60.0))})
            assert big.status_code == 503, big.text
            assert big.json()["error"]["code"] == "storage_full" and big.json()["error"]["type"] == "server_error"
            assert client.get("/health").json()["db_stats"]["total"] == 2  # reads still work
            time.sleep(2.5)  # the running job's transcript is ready; storing it fails and is retried
            assert status(client, running) == "processing" and status(client, waiting) == "queued"
        finally:
            resource.prlimit(server.pid, resource.RLIMIT_FSIZE, unlimited)

        wait_until(lambda: status(client, waiting) == "completed", what="the queue moves again")
        assert status(client, running) == "completed"
        assert submit(client, "refused", 3.2)
        wait_until(lambda: client.get("/health").json()["db_stats"]["pending"] == 0)
        assert db_rows(db, "SELECT status, COUNT(*) FROM jobs GROUP BY 1") == [("completed", 3)]
        assert db_rows(db, "SELECT COUNT(*) FROM job_audio") == [(0,)]
        assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
        assert server.process is not None and server.process.poll() is None
    # The running job was transcribed once: its result was kept in memory while the disk was full.
    assert journal_events(journal)["start 3.00"] == 1
