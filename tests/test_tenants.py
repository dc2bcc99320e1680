"""Tenant isolation through the real server with keys on (two tenants and an operator), the openai SDK and httpx:
a tenant never sees another's job, by id, result, events, lookup, deletion or queue counts (404, not 403); a pair is
unique per tenant; the admin key sees every tenant."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.jobs import TEXT, TRANSCRIPTIONS, voicemail, wait_until
from tests.support.tenants import KEY_ADMIN, KEY_T1, KEY_T2, as_key, keyed_server, sdk


@pytest.fixture
def url(settings) -> Iterator[str]:
    with keyed_server(settings) as url:
        yield url


def _submit(client: httpx.Client, user_uuid: str, message_id: str) -> dict:
    response = client.post(
        TRANSCRIPTIONS, files={"file": ("vm.wav", voicemail())}, data={"user_uuid": user_uuid, "message_id": message_id}
    )
    assert response.status_code == 200, response.text
    return response.json()


def _completed(client: httpx.Client, job_id: str) -> dict:
    wait_until(lambda: client.get(f"{TRANSCRIPTIONS}/{job_id}").json()["status"] == "completed", what=job_id)
    return client.get(f"{TRANSCRIPTIONS}/{job_id}").json()


def _assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "job_not_found"


def test_a_tenant_cannot_see_another_tenants_job_by_id_result_lookup_or_deletion(url: str) -> None:
    with as_key(url, KEY_T1) as t1, as_key(url, KEY_T2) as t2:
        job_id = _submit(t1, "alice", "vm-1")["job_id"]
        assert _completed(t1, job_id)["text"] == TEXT

        _assert_not_found(t2.get(f"{TRANSCRIPTIONS}/{job_id}"))
        _assert_not_found(t2.get(f"{TRANSCRIPTIONS}/{job_id}/result"))
        _assert_not_found(t2.get(f"{TRANSCRIPTIONS}/{job_id}/result", params={"response_format": "text"}))
        _assert_not_found(t2.get(f"{TRANSCRIPTIONS}/{job_id}/events"))
        assert t2.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "alice", "message_id": "vm-1"}).json() == {
            "found": False
        }
        _assert_not_found(t2.delete(f"{TRANSCRIPTIONS}/{job_id}"))
        _assert_not_found(t2.delete(TRANSCRIPTIONS, params={"user_uuid": "alice", "message_id": "vm-1"}))
        _assert_not_found(t2.delete(TRANSCRIPTIONS, params={"user_uuid": "alice"}))

        # Nothing the other tenant tried touched it; its own events stream tells the job's end.
        events = t1.get(f"{TRANSCRIPTIONS}/{job_id}/events")
        assert events.status_code == 200 and "event: completed" in events.text and TEXT in events.text
        assert t1.get(f"{TRANSCRIPTIONS}/{job_id}/result", params={"response_format": "text"}).text.strip() == TEXT
        found = t1.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "alice", "message_id": "vm-1"}).json()
        assert (found["found"], found["job_id"]) == (True, job_id)


def test_an_openai_sdk_transcription_is_invisible_to_the_other_tenant(url: str) -> None:
    raw = sdk(url, KEY_T1).audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", voicemail()))
    assert raw.parse().text == TEXT
    job_id = raw.headers["x-job-id"]
    with as_key(url, KEY_T1) as t1, as_key(url, KEY_T2) as t2:
        assert t1.get(f"{TRANSCRIPTIONS}/{job_id}").json()["text"] == TEXT
        _assert_not_found(t2.get(f"{TRANSCRIPTIONS}/{job_id}/result"))


def test_the_same_pair_in_two_tenants_is_two_jobs_and_the_admin_sees_both(url: str) -> None:
    with as_key(url, KEY_T1) as t1, as_key(url, KEY_T2) as t2, as_key(url, KEY_ADMIN) as admin:
        # t2 submits the pair first: it must not squat t1's voicemail (t1 gets a new job, not cached t2 text).
        second = _submit(t2, "bob", "vm-7")
        first = _submit(t1, "bob", "vm-7")
        assert (first["cached"], second["cached"]) == (False, False)
        assert first["job_id"] != second["job_id"]
        for client, mine in ((t1, first["job_id"]), (t2, second["job_id"])):
            _completed(client, mine)
            found = client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "bob", "message_id": "vm-7"}).json()
            assert found["job_id"] == mine
            again = _submit(client, "bob", "vm-7")
            assert (again["job_id"], again["cached"]) == (mine, True)

        for job_id in (first["job_id"], second["job_id"]):
            assert admin.get(f"{TRANSCRIPTIONS}/{job_id}").json()["status"] == "completed"
            assert admin.get(f"{TRANSCRIPTIONS}/{job_id}/result").json()["text"] == TEXT
            assert "event: completed" in admin.get(f"{TRANSCRIPTIONS}/{job_id}/events").text
        assert admin.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "bob", "message_id": "vm-7"}).json()["found"]
        # The admin deletes across tenants: both jobs of the pair.
        deleted = admin.delete(TRANSCRIPTIONS, params={"user_uuid": "bob", "message_id": "vm-7"}).json()
        assert sorted(d["id"] for d in deleted["data"]) == sorted((first["job_id"], second["job_id"]))
        _assert_not_found(t1.get(f"{TRANSCRIPTIONS}/{first['job_id']}"))


def test_queue_status_counts_only_the_callers_tenant(settings) -> None:
    with (
        keyed_server(settings, workers=0) as url,  # API only: the jobs stay queued
        as_key(url, KEY_T1) as t1,
        as_key(url, KEY_T2) as t2,
        as_key(url, KEY_ADMIN) as admin,
    ):
        for message_id in ("a", "b"):
            _submit(t1, "carol", message_id)
        _submit(t2, "carol", "a")
        lengths = [c.get(f"{TRANSCRIPTIONS}/status").json()["queue_length"] for c in (t1, t2, admin)]
        assert lengths == [2, 1, 3]
