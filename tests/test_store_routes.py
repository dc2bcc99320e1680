"""What the job routes read from the store, over real HTTP: one consistent status snapshot per answer, and a
failed pair retried by a plain resubmission."""

from __future__ import annotations

import sqlite3
import time

from tests.support.jobs import TEXT, TRANSCRIPTIONS, submit, voicemail, wait_until


def test_status_answers_never_contradict_themselves_while_workers_run(client):
    """Issue 12: polls raced the worker ('queued' with queue_position null, 'processing' with progress null)."""
    ids = [submit(client, f"m{i}", 2.0 + 0.1 * i) for i in range(8)]
    seen = set()
    deadline = time.monotonic() + 60
    while len(seen) < len(ids):
        assert time.monotonic() < deadline
        for job_id in ids:
            body = client.get(f"{TRANSCRIPTIONS}/{job_id}").json()
            if body["status"] == "queued":
                assert isinstance(body["queue_position"], int) and body["queue_position"] >= 1, body
            elif body["status"] == "processing":
                assert body["queue_position"] is None and 0 <= body["progress"] <= 1, body
            else:
                assert body["status"] == "completed" and body["text"] == TEXT, body
                seen.add(job_id)


def test_a_failed_pair_is_queued_again_by_a_plain_resubmission(client, settings):
    first = submit(client, "vm1")
    wait_until(lambda: client.get(f"{TRANSCRIPTIONS}/{first}").json()["status"] == "completed")
    with sqlite3.connect(settings.db_path) as db:  # as if its transcription had failed
        db.execute("UPDATE jobs SET status = 'failed', error = 'boom', text = NULL WHERE id = ?", (first,))
    again = client.post(
        TRANSCRIPTIONS,
        files={"file": ("vm.wav", voicemail())},
        data={"user_uuid": "u", "message_id": "vm1"},
    ).json()
    assert again["cached"] is False and again["job_id"] != first and again["status"] == "queued", again
    wait_until(lambda: client.get(f"{TRANSCRIPTIONS}/{again['job_id']}").json()["status"] == "completed")
    lookup = client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u", "message_id": "vm1"}).json()
    assert lookup["job_id"] == again["job_id"] and lookup["text"] == TEXT
