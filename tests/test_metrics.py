"""``/metrics``, read with prometheus_client's own parser after real jobs on a real server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.engines import SlowEngines
from tests.support.http_files import serving
from tests.support.jobs import TRANSCRIPTIONS, status, submit, voicemail, wait_until
from tests.support.server import running_server, wait_ready
from wazo_stt.engine.loader import load_engines

MODEL = "parakeet-tdt-0.6b-v3"
ROOT = Path(__file__).resolve().parents[1]


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def job_counters(samples: dict) -> dict:
    return {
        key: v
        for key, v in samples.items()
        if key[0] in ("wazo_stt_jobs_completed_total", "wazo_stt_jobs_failed_total")
    }


def test_a_completed_job_moves_exactly_one_counter_and_the_histograms(client):
    before = scrape(client)
    assert value(before, "wazo_stt_engine_loaded", model=MODEL) == 1
    job_id = submit(client, "metrics-1", seconds=3.0)
    wait_until(lambda: status(client, job_id) == "completed", what="job completed")
    after = scrape(client)

    changed = {k: v - job_counters(before).get(k, 0) for k, v in job_counters(after).items()}
    assert {k: v for k, v in changed.items() if v} == {("wazo_stt_jobs_completed_total", (("model", MODEL),)): 1}
    assert value(after, "wazo_stt_audio_seconds_transcribed_total", model=MODEL) == pytest.approx(3.0)
    for histogram, labels in (
        ("wazo_stt_queue_wait_seconds", {}),
        ("wazo_stt_processing_seconds", {"model": MODEL}),
        ("wazo_stt_real_time_factor", {"model": MODEL}),
        ("wazo_stt_decode_seconds", {}),
    ):
        assert value(after, f"{histogram}_count", **labels) - value(before, f"{histogram}_count", **labels) == 1
    processing = value(after, "wazo_stt_processing_seconds_sum", model=MODEL)
    assert value(after, "wazo_stt_real_time_factor_sum", model=MODEL) == pytest.approx(processing / 3.0)
    assert value(after, "wazo_stt_jobs_queued") == 0 and value(after, "wazo_stt_jobs_processing") == 0
    assert value(after, "process_resident_memory_bytes") > 10_000_000
    assert value(after, "process_cpu_seconds_total") > 0


def test_queue_gauges_come_from_the_store_and_a_full_queue_is_counted(settings):
    settings.workers = 1
    settings.max_queue_size = 2
    with running_server(settings, SlowEngines(delay=1.5).loader) as url, httpx.Client(base_url=url) as client:
        wait_ready(client)
        first = submit(client, "gauge-0")
        wait_until(lambda: status(client, first) == "processing", what="first job running")
        for i in (1, 2):
            submit(client, f"gauge-{i}")
        samples = scrape(client)
        assert value(samples, "wazo_stt_jobs_processing") == 1
        assert value(samples, "wazo_stt_jobs_queued") == 2
        assert 0 < value(samples, "wazo_stt_oldest_queued_job_age_seconds") < 60
        full = client.post(
            TRANSCRIPTIONS, files={"file": ("vm.wav", voicemail())}, data={"user_uuid": "u", "message_id": "x"}
        )
        assert full.status_code == 429
        samples = scrape(client)
    assert value(samples, "wazo_stt_submissions_refused_total", status="429", reason="queue_full") == 1


def test_refused_submissions_are_counted_by_status_and_reason(client):
    before = scrape(client)
    assert client.post(TRANSCRIPTIONS, data={"model": MODEL}).status_code == 400  # neither file nor url
    bad_model = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", voicemail())}, data={"model": "nope"})
    assert bad_model.status_code == 400
    too_big = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", b"\0" * (7 * 1024 * 1024))})
    assert too_big.status_code == 413
    assert client.get(f"{TRANSCRIPTIONS}/no-such-job").status_code == 404  # not a submission: not counted
    after = scrape(client)

    def delta(status: str, reason: str) -> float:
        name = "wazo_stt_submissions_refused_total"
        return value(after, name, status=status, reason=reason) - value(before, name, status=status, reason=reason)

    assert delta("400", "invalid_request") == 1
    assert delta("400", "model_not_found") == 1
    assert delta("413", "too_large") == 1
    refused = [k for k in after if k[0] == "wazo_stt_submissions_refused_total"]
    assert all(dict(labels)["status"] != "404" for _, labels in refused)


def test_url_fetch_time_and_failures(client):
    before = scrape(client)
    with serving({"/vm.wav": voicemail()}) as (base, _):
        ok = client.post(TRANSCRIPTIONS, data={"url": f"{base}/vm.wav", "user_uuid": "u", "message_id": "url-ok"})
        assert ok.status_code == 200, ok.text
        missing = client.post(TRANSCRIPTIONS, data={"url": f"{base}/gone.wav"})
        assert missing.status_code == 400
    after = scrape(client)
    assert value(after, "wazo_stt_url_fetch_seconds_count") - value(before, "wazo_stt_url_fetch_seconds_count") == 2
    failures = "wazo_stt_url_fetch_failures_total"
    assert value(after, failures, reason="unreachable") - value(before, failures, reason="unreachable") == 1
    refused = "wazo_stt_submissions_refused_total"
    labels = {"status": "400", "reason": "url_fetch_failed"}
    assert value(after, refused, **labels) - value(before, refused, **labels) == 1


def _broken_engines(settings):
    registry = load_engines(settings)
    for engine in registry.engines:

        def transcribe(*_args, **_kwargs):
            raise RuntimeError("the engine broke")

        engine.transcribe = transcribe  # type: ignore[method-assign]
    return registry


def test_a_failed_job_is_counted_once_with_its_reason(settings):
    with running_server(settings, _broken_engines) as url, httpx.Client(base_url=url) as client:
        wait_ready(client)
        job_id = submit(client, "broken")
        wait_until(lambda: status(client, job_id) == "failed", what="job failed")
        samples = scrape(client)
    assert {k: v for k, v in job_counters(samples).items() if v} == {
        ("wazo_stt_jobs_failed_total", (("model", MODEL), ("reason", "engine_error"))): 1
    }


def test_the_dashboard_only_charts_metrics_the_server_exposes(client):
    """docs/grafana-dashboard.json is checked in: a renamed metric must not leave an empty panel behind."""
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    charted = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for expr in exprs
        for name in re.findall(r"\b((?:wazo_stt|process)_[a-z_]+)", expr)
    }
    # Families, not samples: a labelled counter nobody incremented yet has no sample, but is declared.
    exposed = {re.sub(r"_total$", "", f.name) for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert len(charted) >= 15 and charted <= exposed, charted - exposed
    scrape_config = yaml.safe_load((ROOT / "docs" / "prometheus.yml").read_text())
    assert scrape_config["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_metrics_need_an_admin_key_when_keys_are_on(settings):
    settings.api_keys = "tenant-key:acme,ops-key:ops:admin"
    with running_server(settings) as url, httpx.Client(base_url=url) as client:
        assert client.get("/metrics").status_code == 401
        refused = client.get("/metrics", headers={"Authorization": "Bearer tenant-key"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_required"
        assert "wazo_stt" not in refused.text
        ok = client.get("/metrics", headers={"Authorization": "Bearer ops-key"})
        assert ok.status_code == 200 and "wazo_stt_jobs_queued" in ok.text
        anonymous = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", voicemail())})
        assert anonymous.status_code == 401
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(
                client.get("/metrics", headers={"Authorization": "Bearer ops-key"}).text
            )
            for s in family.samples
        }
    assert value(samples, "wazo_stt_submissions_refused_total", status="401", reason="invalid_api_key") == 1
