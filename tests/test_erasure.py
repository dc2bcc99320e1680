"""Erasure through the real server with keys on: DELETE by id, by pair and by user; what is deleted is gone from
the SQLite files themselves; a queued job never runs, a running one is cancelled (its waiting openai SDK call gets
a 404), without error loops, and the worker goes on with the next job."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import openai
import pytest

from tests.support.audio_fixtures import wav_bytes
from tests.support.gate import Gate
from tests.support.jobs import TEXT, TRANSCRIPTIONS, voicemail, wait_until
from tests.support.tenants import KEY_T1, KEY_T2, as_key, keyed_server, sdk
from tests.support.tiny_parakeet import expected_text, render

# A transcript no other job has, so finding its bytes in a database file means "this job".
PIECES = [("▁bon", 0.3), ("jour", 0.7), ("▁the", 1.2), ("▁cat", 1.7), ("?", 2.2), ("▁hello", 2.7), ("▁cat", 3.2)]
SECRET_TEXT = expected_text([p for p, _ in PIECES])
SECRET_AUDIO = wav_bytes(render(PIECES, duration=4.0), 16000)


def _in_files(db: Path, needle: bytes) -> list[str]:
    """Which of the database's files (main, -wal, -shm) hold ``needle``, read as raw bytes."""
    paths = (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
    return [p.name for p in paths if p.exists() and needle in p.read_bytes()]


def _submit(client, user_uuid: str, message_id: str, audio: bytes | None = None) -> str:
    response = client.post(
        TRANSCRIPTIONS,
        files={"file": ("vm.wav", audio or voicemail())},
        data={"user_uuid": user_uuid, "message_id": message_id},
    )
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def _status(client, job_id: str) -> str:
    return client.get(f"{TRANSCRIPTIONS}/{job_id}").json().get("status", "gone")


def test_delete_by_id_leaves_no_trace_of_text_or_audio_in_the_database_files(settings) -> None:
    db = settings.db_path
    with keyed_server(settings) as url, as_key(url, KEY_T1) as t1:
        job_id = _submit(t1, "dave", "vm-1", SECRET_AUDIO)
        wait_until(lambda: _status(t1, job_id) == "completed", what="completed")
        assert t1.get(f"{TRANSCRIPTIONS}/{job_id}").json()["text"] == SECRET_TEXT
        text, audio = SECRET_TEXT.encode(), SECRET_AUDIO[40_000:40_064]
        assert _in_files(db, text) and _in_files(db, audio)  # the search sees them before (so it can fail)

        response = t1.delete(f"{TRANSCRIPTIONS}/{job_id}")
        assert response.status_code == 200
        assert response.json() == {
            "id": job_id,
            "object": "transcription.job",
            "deleted": True,
            "status": "completed",
            "user_uuid": "dave",
            "message_id": "vm-1",
        }
        assert _in_files(db, text) == [] and _in_files(db, audio) == []
        assert t1.get(f"{TRANSCRIPTIONS}/{job_id}").status_code == 404
        assert t1.get(f"{TRANSCRIPTIONS}/{job_id}/result").status_code == 404
        assert t1.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "dave", "message_id": "vm-1"}).json() == {
            "found": False
        }
        assert t1.delete(f"{TRANSCRIPTIONS}/{job_id}").status_code == 404  # already gone
        # The pair is free again: a resubmission is a new job.
        again = _submit(t1, "dave", "vm-1")
        assert again != job_id


def test_delete_by_pair_and_by_user_in_the_callers_tenant(settings) -> None:
    with keyed_server(settings, workers=0) as url, as_key(url, KEY_T1) as t1, as_key(url, KEY_T2) as t2:
        m1, m2, other_user = _submit(t1, "erin", "m1"), _submit(t1, "erin", "m2"), _submit(t1, "frank", "m1")
        theirs = _submit(t2, "erin", "m1")

        response = t1.delete(TRANSCRIPTIONS, params={"user_uuid": "erin", "message_id": "m1"})
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "list"
        assert [(d["id"], d["deleted"], d["status"]) for d in body["data"]] == [(m1, True, "queued")]
        assert _status(t2, theirs) == "queued"  # the same pair in the other tenant is untouched

        # The user left: every job of theirs, whatever the message id.
        body = t1.delete(TRANSCRIPTIONS, params={"user_uuid": "erin"}).json()
        assert [d["id"] for d in body["data"]] == [m2]
        assert t1.delete(TRANSCRIPTIONS, params={"user_uuid": "erin"}).status_code == 404
        assert _status(t1, other_user) == "queued" and _status(t2, theirs) == "queued"
        assert t1.get(f"{TRANSCRIPTIONS}/status").json()["queue_length"] == 1

        missing = t1.delete(TRANSCRIPTIONS, params={"message_id": "m1"})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "user_uuid"


def _processing_job_id(db: Path) -> str:
    """The id of the job a worker holds, read from the database file as an operator would."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id FROM jobs WHERE status = 'processing'").fetchall()
    assert len(rows) == 1, rows
    return rows[0][0]


def test_deleting_queued_and_running_jobs_cancels_them_and_the_worker_goes_on(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A synchronous openai SDK call waits for a job held mid-transcription; a queued job waits behind it. Both
    are deleted: the SDK gets a 404 (not a 500), the worker drops the running job without error loops, the
    queued one never runs, neither comes back, and the next job is transcribed."""
    caplog.set_level(logging.INFO, logger="wazo_stt")
    gate = Gate(after_first_chunk=True)
    with keyed_server(settings, gate.loader) as url, as_key(url, KEY_T1) as t1:
        outcome: list[BaseException] = []

        def sync_call() -> None:
            try:
                sdk(url, KEY_T1).audio.transcriptions.create(model="whisper-1", file=("a.wav", voicemail()))
            except openai.APIStatusError as exc:
                outcome.append(exc)

        caller = threading.Thread(target=sync_call)
        caller.start()
        wait_until(lambda: t1.get(f"{TRANSCRIPTIONS}/status").json()["processing"], what="processing")
        running = _processing_job_id(settings.db_path)
        queued = _submit(t1, "gina", "vm-1")
        assert _status(t1, queued) == "queued"

        assert t1.delete(f"{TRANSCRIPTIONS}/{queued}").json()["status"] == "queued"
        assert t1.delete(f"{TRANSCRIPTIONS}/{running}").json()["status"] == "processing"
        caller.join(timeout=30)
        assert len(outcome) == 1 and isinstance(outcome[0], openai.NotFoundError), outcome
        assert outcome[0].code == "job_deleted"

        wait_until(lambda: "lease lost (deleted, or taken over" in caplog.text, what="the worker noticed")
        gate.release.release()  # the dropped transcription thread may go on: it stops at its next report
        after = _submit(t1, "gina", "vm-2")
        gate.release.release()
        wait_until(lambda: _status(t1, after) == "completed", what="the next job")
        assert t1.get(f"{TRANSCRIPTIONS}/{after}").json()["text"] == TEXT
        assert _status(t1, running) == _status(t1, queued) == "gone"
        with sqlite3.connect(settings.db_path) as conn:
            assert conn.execute("SELECT count(*) FROM jobs WHERE id IN (?, ?)", (running, queued)).fetchone() == (0,)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
