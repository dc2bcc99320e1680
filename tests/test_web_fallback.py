"""A fresh install without Parakeet's files: the server serves the embedded Whisper tiny.en at once, says so in
``/health`` and ``/v1/models``, transcribes real (English) speech, and switches to Parakeet by itself once the
files land in MODEL_PATH, without a restart.
"""

from __future__ import annotations

import shutil
import time

import httpx

from tests.support.audio_fixtures import wav_bytes
from tests.support.server import running_server, wait_ready
from tests.support.speech import spoken
from tests.support.tiny_parakeet import expected_text, render
from wazo_stt.api import reload


def test_missing_parakeet_serves_the_embedded_whisper_then_switches(settings, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(reload, "CHECK_INTERVAL_SECS", 0.2)
    settings.model_path = tmp_path / "parakeet"  # not downloaded yet
    speech = wav_bytes(spoken("Please call me back tomorrow morning."), 16000)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(client, timeout=60)
        health = client.get("/health").json()
        assert health["status"] == "healthy" and health["model"] == "whisper-tiny.en"
        assert "ENGLISH ONLY" in health["fallback"] and "download-model" in health["fallback"]
        cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert "ENGLISH ONLY" in cards["whisper-tiny.en"]["fallback"]

        text = client.post(
            "/v1/audio/transcriptions", files={"file": ("s.wav", speech)}, data={"response_format": "text"}
        ).text
        assert "tomorrow" in text.lower()

        # `wazo-stt download-model` (here: a copy) puts the files in place; the server picks them up alone.
        shutil.copytree(tiny_model_dir, settings.model_path)
        deadline = time.monotonic() + 30
        while client.get("/health").json()["model"] != "parakeet-tdt-0.6b-v3":
            assert time.monotonic() < deadline, "never switched to Parakeet"
            time.sleep(0.1)
        health = client.get("/health").json()
        assert "fallback" not in health and "not_loaded" not in health
        tones = wav_bytes(render([("▁hello", 0.5), ("▁world", 1.2)], duration=2.5), 16000)
        answer = client.post("/v1/audio/transcriptions", files={"file": ("t.wav", tones)}).json()
        assert answer["text"] == expected_text(["▁hello", "▁world"])
