"""Metrics, webhooks and JSON logs across processes: an API-only server and a worker node on one database, each
exposing its own counters, the same queue gauges, and one webhook delivery between them."""

from __future__ import annotations

import base64
import json
import os
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

from tests.support.jobs import TRANSCRIPTIONS, voicemail, wait_until
from tests.support.processes import free_port, server_env
from tests.support.receiver import receiving
from tests.test_scale_roles import _up, command

MODEL = "parakeet-tdt-0.6b-v3"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def counters(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.slow
def test_each_process_counts_its_own_work_and_one_of_them_delivers(tmp_path, tiny_model_dir):
    env = {
        **os.environ,
        **server_env(
            tiny_model_dir, tmp_path / "jobs.db", log_format="json", webhook_secret=SECRET, webhook_poll_secs=0.05
        ),
        "HOST": "127.0.0.1",
    }
    api_url, worker_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    completed = ("wazo_stt_jobs_completed_total", (("model", MODEL),))
    with (
        receiving() as receiver,
        command(["serve", "--workers", "0", "--port", api_url.rsplit(":", 1)[1]], env, tmp_path / "api.log"),
        command(["worker", "--port", worker_url.rsplit(":", 1)[1]], env, tmp_path / "worker.log"),
    ):
        wait_until(lambda: _up(api_url) and _up(worker_url), timeout=60, what="both up")
        with httpx.Client(base_url=api_url, timeout=30) as api:
            response = api.post(
                TRANSCRIPTIONS,
                files={"file": ("vm.wav", voicemail())},
                data={"user_uuid": "u", "message_id": "m", "callback_url": receiver.url},
            )
            assert response.status_code == 200, response.text
            job_id = response.json()["job_id"]
            (delivery,) = receiver.wait_for(1)
            time.sleep(1)  # room for a second, duplicate delivery by the other process, if one were made
            assert len(receiver.deliveries) == 1
            assert api.get(f"{TRANSCRIPTIONS}/{job_id}").json()["webhook"]["status"] == "delivered"
        worker, server = counters(worker_url), counters(api_url)

    assert Webhook(SECRET).verify(delivery.body, delivery.headers)["job_id"] == job_id
    assert worker.get(completed) == 1 and server.get(completed, 0) == 0  # counters: per process
    for gauges in (worker, server):  # gauges: from the database, the same everywhere
        assert gauges[("wazo_stt_jobs_queued", ())] == 0 and gauges[("wazo_stt_jobs_processing", ())] == 0
    worker_lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    done = next(line for line in worker_lines if line["message"].startswith(f"Job {job_id} completed"))
    assert done["job_id"] == job_id and done["level"] == "info"
