"""schemathesis over /openapi.json against a live server on the tiny model: every documented operation, every
check, a few examples each (a fixed seed, so a failure is reproducible with the same command).

One check is left out: ``positive_data_acceptance`` wants every schema-valid request accepted, but no schema can
say "a file that decodes as audio": a valid multipart body whose ``file`` is a PNG is rightly a 400.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is not installed (the test extra)")


def test_openapi_schema_holds_against_the_server(shared_client, tmp_path):
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{shared_client.base_url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        ":memory:",
        "--no-color",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: " in run.stdout


def test_openapi_documents_the_form_and_the_real_statuses(shared_client):
    schema = shared_client.get("/openapi.json").json()
    post = schema["paths"]["/v1/audio/transcriptions"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert set(form) == {
        "file", "url", "model", "language", "prompt", "response_format", "temperature",
        "timestamp_granularities[]", "include[]", "stream", "user_uuid", "message_id", "force", "callback_url",
    }  # fmt: skip
    assert {"400", "413", "429", "503"} <= set(post["responses"])
    assert "422" not in shared_client.get("/openapi.json").text
    lookup = schema["paths"]["/v1/audio/transcriptions/lookup"]["get"]["parameters"]
    assert {p["name"]: p["required"] for p in lookup} == {"user_uuid": True, "message_id": True}
    assert "404" in schema["paths"]["/v1/audio/transcriptions/{job_id}"]["get"]["responses"]
