"""Structured logs: ``LOG_FORMAT=json`` lines from a real server process, tagged with job and request ids, and
never carrying transcript text or a URL's token."""

from __future__ import annotations

import io
import json
import logging

import httpx

from tests.support.http_files import serving
from tests.support.jobs import TEXT, TRANSCRIPTIONS, status, voicemail, wait_until
from tests.support.processes import server_env, server_process
from tests.support.server import running_server, wait_ready
from wazo_stt.logs import ContextFilter, JsonFormatter, job_context, log_handler, request_id_var

SECRET = "s3cr3t-t0ken-42"


def _json_lines(log: str) -> list[dict]:
    # ServerProcess writes its own "--- start" marker lines between runs; everything else is the server's.
    return [json.loads(line) for line in log.splitlines() if line.strip() and not line.startswith("--- start")]


def test_json_server_log_tags_jobs_and_requests_and_leaks_nothing(tmp_path, tiny_model_dir):
    env = server_env(tiny_model_dir, tmp_path / "jobs.db", log_format="json", log_level="debug")
    with serving({"/vm.wav": voicemail()}) as (base, seen), server_process(env, tmp_path / "server.log") as server:
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post(
                TRANSCRIPTIONS,
                data={"url": f"{base}/vm.wav?token={SECRET}", "user_uuid": "u1", "message_id": "m1"},
                headers={"X-Request-Id": "pbx-req-42"},
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-request-id"] == "pbx-req-42"
            job_id = response.json()["job_id"]
            wait_until(lambda: status(client, job_id) == "completed", what="job completed")
            assert client.get(f"{TRANSCRIPTIONS}/{job_id}").json()["text"] == TEXT
            generated = client.get("/health").headers["x-request-id"]
            assert len(generated) == 32
            hostile = client.get("/health", headers={"X-Request-Id": "<b>" + "a" * 200}).headers["x-request-id"]
            assert len(hostile) == 32  # not an id: replaced, never echoed
        server.terminate()
        server.wait(30)
        assert seen, "the server fetched the audio"

    log = server.log()
    assert SECRET not in log, "a URL token reached the log"
    assert TEXT not in log, "transcript text reached the log"
    lines = _json_lines(log)  # every line parses: one JSON object per line
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    about_job = [line for line in lines if job_id in line["message"]]
    assert len(about_job) >= 2, about_job  # queued (by the request) and completed (by the worker)
    assert all(line.get("job_id") == job_id for line in about_job), about_job
    queued = next(line for line in about_job if "queued" in line["message"])
    assert queued["request_id"] == "pbx-req-42"
    completed = next(line for line in about_job if "completed" in line["message"])
    assert completed["logger"] == "wazo_stt.jobs.worker" and "request_id" not in completed


def test_plain_format_stays_the_default_and_names_the_job():
    stream = io.StringIO()
    handler = log_handler("plain", stream)
    logger = logging.getLogger("wazo_stt.test_plain")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with job_context("job-1", tenant="acme"):
            logger.info("fetching %s", f"https://pbx/vm.wav?token={SECRET}")
        logger.info("idle")
    finally:
        logger.removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert "[job_id=job-1 tenant=acme]" in first and SECRET not in first and "token=" in first
    assert second.endswith("wazo_stt.test_plain: idle")


def test_json_formatter_fields_and_exception():
    record = logging.LogRecord("wazo_stt.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
    token = request_id_var.set("r-1")
    try:
        ContextFilter().filter(record)
    finally:
        request_id_var.reset(token)
    try:
        raise ValueError(f"http://user:{SECRET}@pbx/x")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error" and entry["logger"] == "wazo_stt.x" and entry["message"] == "failed here"
    assert entry["request_id"] == "r-1" and "job_id" not in entry
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert "ValueError" in entry["exception"] and SECRET not in entry["exception"]


def test_lines_of_an_authenticated_request_name_its_tenant(settings):
    settings.api_keys = "acme-key:acme"
    stream = io.StringIO()
    handler = log_handler("json", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
            wait_ready(client)
            response = client.post(
                TRANSCRIPTIONS,
                files={"file": ("vm.wav", voicemail())},
                data={"user_uuid": "u", "message_id": "tenant-1"},
                headers={"Authorization": "Bearer acme-key"},
            )
            assert response.status_code == 200, response.text
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    job_id = response.json()["job_id"]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    queued = next(line for line in lines if line["message"].startswith(f"Job {job_id} queued"))
    assert queued["tenant"] == "acme" and queued["job_id"] == job_id
    access = next(line for line in lines if line["logger"] == "wazo_stt.access" and "POST" in line["message"])
    assert access["tenant"] == "acme" and access["job_id"] == job_id and "acme-key" not in stream.getvalue()
