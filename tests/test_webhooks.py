"""Webhooks against a real loopback receiver: Standard Webhooks signatures checked by the reference library,
retries with backoff, delivery after a kill -9, and callback addresses refused at submission."""

from __future__ import annotations

import base64
import json
import os

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.jobs import TRANSCRIPTIONS, status, voicemail, wait_until
from tests.support.processes import server_env, server_process
from tests.support.receiver import receiving
from tests.support.server import running_server, wait_ready

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def hook_settings(settings):
    settings.webhook_secret = SecretStr(SECRET)
    settings.webhook_retry_first_secs = 0.3
    settings.webhook_poll_secs = 0.05
    return settings


@pytest.fixture
def hook_client(hook_settings):
    with running_server(hook_settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_ready(client)
        yield client


def submit_with_callback(client: httpx.Client, callback_url: str, message_id: str = "m1") -> str:
    response = client.post(
        TRANSCRIPTIONS,
        files={"file": ("vm.wav", voicemail())},
        data={"user_uuid": "u", "message_id": message_id, "callback_url": callback_url},
    )
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def webhook_of(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"{TRANSCRIPTIONS}/{job_id}").json()["webhook"]


def test_completed_job_posts_its_status_signed_per_standard_webhooks(hook_client):
    with receiving() as receiver:
        job_id = submit_with_callback(hook_client, receiver.url + "?token=abc")
        (delivery,) = receiver.wait_for(1)
        wait_until(lambda: webhook_of(hook_client, job_id)["status"] == "delivered", what="delivery recorded")

    payload = Webhook(SECRET).verify(delivery.body, delivery.headers)  # the reference verifier, not ours
    status_body = hook_client.get(f"{TRANSCRIPTIONS}/{job_id}").json()
    webhook = status_body.pop("webhook")
    assert payload == status_body and payload["status"] == "completed" and payload["text"]
    assert delivery.headers["webhook-id"].startswith("msg_")
    assert delivery.headers["content-type"] == "application/json"
    assert webhook["attempts"] == 1 and webhook["last_error"] is None and webhook["delivered_at"]
    assert "abc" not in webhook["url"], "the callback URL's token is shown in the job status"
    with pytest.raises(WebhookVerificationError):  # another key: refused, so the check above means something
        Webhook("whsec_" + base64.b64encode(os.urandom(32)).decode()).verify(delivery.body, delivery.headers)
    tampered = delivery.body.replace(b"completed", b"failed")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, delivery.headers)


def test_receiver_failing_twice_gets_the_event_three_times_with_backoff(hook_client):
    with receiving([500, 500]) as receiver:
        job_id = submit_with_callback(hook_client, receiver.url)
        first, second, third = receiver.wait_for(3)
        wait_until(lambda: webhook_of(hook_client, job_id)["status"] == "delivered", what="delivery recorded")
        assert len(receiver.deliveries) == 3

    assert [d.answered for d in (first, second, third)] == [500, 500, 200]
    assert len({d.headers["webhook-id"] for d in (first, second, third)}) == 1  # one event, three attempts
    for delivery in (first, second, third):
        Webhook(SECRET).verify(delivery.body, delivery.headers)  # re-signed with each attempt's timestamp
    gap1, gap2 = second.at - first.at, third.at - second.at
    assert gap1 >= 0.3 and gap2 >= 0.6, (gap1, gap2)  # 0.3 s, then doubled
    webhook = webhook_of(hook_client, job_id)
    assert webhook["attempts"] == 3 and webhook["status"] == "delivered"

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(hook_client.get("/metrics").text)
        for s in family.samples
    }
    attempts = "wazo_stt_webhook_delivery_attempts_total"
    assert samples[(attempts, (("outcome", "retry"),))] == 2
    assert samples[(attempts, (("outcome", "delivered"),))] == 1
    assert samples[("wazo_stt_webhook_deliveries_pending", ())] == 0


def test_failing_receiver_shows_the_pending_retry_in_the_job_status(hook_client):
    with receiving(then=503) as receiver:
        job_id = submit_with_callback(hook_client, receiver.url)
        receiver.wait_for(1)
        wait_until(lambda: webhook_of(hook_client, job_id)["attempts"] >= 1, what="attempt recorded")
        webhook = webhook_of(hook_client, job_id)
    assert webhook["status"] == "pending" and webhook["last_error"] == "HTTP 503"
    assert webhook["next_attempt_at"] is not None


@pytest.mark.parametrize(
    ("callback_url", "code"),
    [
        ("http://169.254.169.254/latest/meta-data", "invalid_callback_url"),  # cloud metadata
        ("http://[::ffff:169.254.169.254]/x", "invalid_callback_url"),
        ("ftp://127.0.0.1/x", "invalid_callback_url"),
        ("not a url", "invalid_callback_url"),
    ],
)
def test_blocked_callback_address_is_refused_at_submission(hook_client, callback_url, code):
    response = hook_client.post(
        TRANSCRIPTIONS,
        files={"file": ("vm.wav", voicemail())},
        data={"user_uuid": "u", "message_id": "blocked", "callback_url": callback_url},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == "callback_url"
    assert hook_client.get(f"{TRANSCRIPTIONS}/lookup", params={"user_uuid": "u", "message_id": "blocked"}).json() == {
        "found": False
    }


def test_allow_list_applies_to_callbacks(hook_settings):
    hook_settings.url_allowed_hosts = "pbx.example.com"
    with running_server(hook_settings) as url, httpx.Client(base_url=url) as client, receiving() as receiver:
        wait_ready(client)
        response = client.post(
            TRANSCRIPTIONS, files={"file": ("vm.wav", voicemail())}, data={"callback_url": receiver.url}
        )
    assert response.status_code == 400 and "URL_ALLOWED_HOSTS" in response.json()["error"]["message"]


def test_callback_without_a_secret_is_refused(client):
    response = client.post(
        TRANSCRIPTIONS, files={"file": ("vm.wav", voicemail())}, data={"callback_url": "http://127.0.0.1:9/x"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "webhooks_disabled"


def test_webhook_url_is_the_default_callback(hook_settings):
    with receiving() as receiver:
        hook_settings.webhook_url = receiver.url
        with running_server(hook_settings) as url, httpx.Client(base_url=url, timeout=30) as client:
            wait_ready(client)
            response = client.post(TRANSCRIPTIONS, files={"file": ("vm.wav", voicemail())})  # synchronous
            assert response.status_code == 200
            (delivery,) = receiver.wait_for(1)
    payload = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert payload["job_id"] == response.headers["x-job-id"] and payload["text"] == response.json()["text"]


@pytest.mark.slow
def test_server_killed_before_delivering_delivers_after_restart(tmp_path, tiny_model_dir):
    env = server_env(
        tiny_model_dir,
        tmp_path / "jobs.db",
        webhook_secret=SECRET,
        webhook_retry_first_secs=0.2,
        webhook_retry_max_secs=0.5,
        webhook_poll_secs=0.05,
    )
    with receiving(then=500) as receiver, server_process(env, tmp_path / "server.log") as server:
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            job_id = submit_with_callback(client, receiver.url)
            wait_until(lambda: status(client, job_id) == "completed", what="job completed")
            receiver.wait_for(1)
        server.kill()  # kill -9: the event is written but not delivered
        tried = len(receiver.deliveries)
        receiver.then = 200
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            wait_until(lambda: webhook_of(client, job_id)["status"] == "delivered", timeout=60, what="delivered")
            final = client.get(f"{TRANSCRIPTIONS}/{job_id}").json()

    delivered = [d for d in receiver.deliveries if d.answered == 200]
    assert len(delivered) == 1 and len(receiver.deliveries) > tried
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 1
    payload = Webhook(SECRET).verify(delivered[0].body, delivered[0].headers)
    final.pop("webhook")
    assert payload == final
    assert json.loads(delivered[0].body)["status"] == "completed"
