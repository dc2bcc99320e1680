"""The telephony workflow: lookup, submit by URL or file with an identity, poll, lookup again, cache, force."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from tests.support.audio_fixtures import wav_bytes
from tests.support.gate import Gate
from tests.support.http_files import serving
from tests.support.server import running_server, wait_ready
from tests.support.tiny_parakeet import expected_text, render

PIECES = [("▁hello", 0.5), ("▁world", 1.2), (".", 1.8)]
AUDIO = wav_bytes(render(PIECES, duration=3.0), 16000)
TEXT = expected_text([p for p, _ in PIECES])
TRANSCRIPTIONS = "/v1/audio/transcriptions"


def poll(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"{TRANSCRIPTIONS}/{job_id}").json()
        if status["status"] in ("completed", "failed"):
            return status
        time.sleep(0.05)
    raise TimeoutError(job_id)


def test_url_submission_lookup_cache_and_force(client, settings, caplog):
    caplog.set_level(logging.DEBUG)
    assert client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u1", "message_id": "m1"}).json() == {
        "found": False
    }
    with serving({"/vm/1.wav": AUDIO}) as (base, seen):
        url = f"{base}/vm/1.wav?token=SECRET-TOKEN"
        form = {"url": url, "user_uuid": "u1", "message_id": "m1"}
        first = client.post(TRANSCRIPTIONS, data=form).json()
        assert first["status"] == "queued" and first["cached"] is False and first["queue_position"] == 1
        assert first["message"] == "Job queued. Position in queue: 1"
        assert seen == ["/vm/1.wav?token=SECRET-TOKEN"]  # the token reaches the PBX...

        done = poll(client, first["job_id"])
        assert done["status"] == "completed" and done["text"] == TEXT
        assert done["duration"] == pytest.approx(3.0, abs=0.01)
        assert done["user_uuid"] == "u1" and done["message_id"] == "m1"
        assert isinstance(done["created_at"], int) and done["queue_position"] is None

        found = client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u1", "message_id": "m1"}).json()
        assert found["found"] is True and found["job_id"] == first["job_id"] and found["text"] == TEXT

        again = client.post(TRANSCRIPTIONS, data=form).json()
        assert again == {
            "job_id": first["job_id"],
            "status": "completed",
            "queue_position": None,
            "message": "Transcription already exists",
            "cached": True,
        }
        assert len(seen) == 1  # a known pair is answered from the store, without downloading again

        forced = client.post(TRANSCRIPTIONS, data={**form, "force": "true"}).json()
        assert forced["cached"] is False and forced["job_id"] != first["job_id"]
        assert poll(client, forced["job_id"])["text"] == TEXT
        assert client.get(f"{TRANSCRIPTIONS}/{first['job_id']}").status_code == 404

    # ...but never our responses, our database or our log.
    assert "SECRET-TOKEN" not in client.get(f"{TRANSCRIPTIONS}/{forced['job_id']}").text
    database = b"".join(f.read_bytes() for f in settings.db_path.parent.iterdir() if f.is_file())
    assert b"/vm/1.wav" in database  # the source is stored...
    assert b"SECRET-TOKEN" not in database  # ...without its token
    assert "/vm/1.wav" in caplog.text and "SECRET-TOKEN" not in caplog.text


def test_force_on_a_pair_already_running_answers_without_downloading(settings):
    gate = Gate()
    with (
        running_server(settings, gate.loader) as url,
        httpx.Client(base_url=url, timeout=30) as client,
        serving({"/vm/2.wav": AUDIO}) as (base, seen),
    ):
        wait_ready(client)
        form = {"url": f"{base}/vm/2.wav", "user_uuid": "u", "message_id": "running"}
        first = client.post(TRANSCRIPTIONS, data=form).json()["job_id"]
        deadline = time.monotonic() + 10
        while client.get(f"{TRANSCRIPTIONS}/{first}").json()["status"] != "processing":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        forced = client.post(TRANSCRIPTIONS, data={**form, "force": "true"}).json()
        assert forced["job_id"] == first and forced["status"] == "processing"
        assert len(seen) == 1  # the running job will produce a fresh transcript: nothing to download
        gate.release.release()
        assert poll(client, first)["text"] == TEXT


def test_file_submission_with_identity_returns_at_once(client):
    response = client.post(
        TRANSCRIPTIONS,
        files={"file": ("vm.wav", AUDIO)},
        data={"user_uuid": "u2", "message_id": "m2", "response_format": "srt"},
    )
    assert response.status_code == 200
    job = response.json()
    assert job["status"] in ("queued", "processing", "completed")
    poll(client, job["job_id"])
    result = client.get(f"{TRANSCRIPTIONS}/{job['job_id']}/result")
    assert result.text.startswith("1\n00:00:00,")  # the format asked at submission
    assert client.get(f"{TRANSCRIPTIONS}/{job['job_id']}/result?response_format=json").json()["text"] == TEXT


def test_queue_positions_decrease_then_processing_then_completed(settings):
    gate = Gate()
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_ready(client)
        jobs = [
            client.post(
                TRANSCRIPTIONS, files={"file": ("vm.wav", AUDIO)}, data={"user_uuid": "u", "message_id": f"m{i}"}
            ).json()["job_id"]
            for i in range(3)
        ]

        def positions() -> list:
            return [client.get(f"{TRANSCRIPTIONS}/{j}").json()["queue_position"] for j in jobs]

        deadline = time.monotonic() + 10
        while client.get(f"{TRANSCRIPTIONS}/{jobs[0]}").json()["status"] != "processing":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert positions() == [None, 1, 2]
        bodies = [client.get(f"{TRANSCRIPTIONS}/{j}").json() for j in jobs]
        assert bodies[0]["progress"] == 0.0  # running, nothing recognised yet (the gate holds it)
        assert "progress" not in bodies[1] and "progress" not in bodies[2]
        status = client.get(f"{TRANSCRIPTIONS}/status").json()
        assert status == {"queue_length": 2, "processing": True, "max_queue_size": 100}
        pending = client.get(f"{TRANSCRIPTIONS}/{jobs[2]}/result")
        assert pending.status_code == 202 and pending.json()["queue_position"] == 2

        gate.release.release()
        assert poll(client, jobs[0])["status"] == "completed"
        deadline = time.monotonic() + 10
        while positions() != [None, None, 1]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        gate.release.release()
        gate.release.release()
        assert [poll(client, j)["text"] for j in jobs] == [TEXT] * 3
        health = client.get("/health").json()
        assert health["db_stats"] == {"total": 3, "completed": 3, "failed": 0, "pending": 0}


def test_a_long_recording_reports_its_progress_while_it_runs(settings):
    """Fixed 5 s chunks with 2 s overlap over 12 s (0-5, 3-8, 6-11, 9-12): held after the first chunk, the
    job says how far it got, in audio sent to the model."""
    settings = settings.model_copy(update={"chunk_max_secs": 5.0})
    audio = wav_bytes(render([("▁hello", 1.0), ("▁world", 6.0), ("▁the", 10.0)], duration=12.0), 16000)
    gate = Gate(after_first_chunk=True)
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_ready(client)
        job_id = client.post(
            TRANSCRIPTIONS, files={"file": ("long.wav", audio)}, data={"user_uuid": "u", "message_id": "long"}
        ).json()["job_id"]
        deadline = time.monotonic() + 10
        while not (body := client.get(f"{TRANSCRIPTIONS}/{job_id}").json()).get("progress"):
            assert time.monotonic() < deadline, body
            time.sleep(0.02)
        assert body["status"] == "processing"
        assert body["progress"] == pytest.approx(5 / 18, abs=0.001)  # 5 s of the 5 + 5 + 5 + 3 s
        gate.release.release()
        done = poll(client, job_id)
        assert done["status"] == "completed" and "progress" not in done
        assert done["text"] == expected_text(["▁hello", "▁world", "▁the"])


def test_cors_lets_a_browser_page_on_another_origin_use_the_api(client):
    origin = "https://wazo.example.com"
    preflight = client.options(
        TRANSCRIPTIONS,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", origin)
    lookup = client.get(
        f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u", "message_id": "m"}, headers={"Origin": origin}
    )
    assert lookup.headers["access-control-allow-origin"] in ("*", origin)
