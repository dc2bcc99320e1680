"""Small helpers shared by the reliability tests: voicemails told apart by length, submitting, waiting."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.audio_fixtures import wav_bytes
from tests.support.tiny_parakeet import expected_text, render

TRANSCRIPTIONS = "/v1/audio/transcriptions"
PIECES = [("▁hello", 0.5), ("▁world", 1.2), (".", 1.8)]
TEXT = expected_text([p for p, _ in PIECES])


def voicemail(seconds: float = 3.0) -> bytes:
    """A WAV the tiny model transcribes as TEXT; its length (>= 2 s) tells it apart in an engine journal."""
    return wav_bytes(render(PIECES, duration=seconds), 16000)


def submit(client: httpx.Client, message_id: str, seconds: float = 3.0, *, user_uuid: str = "u") -> str:
    """Submit a voicemail asynchronously (with an identity); returns its job id."""
    response = client.post(
        TRANSCRIPTIONS,
        files={"file": ("vm.wav", voicemail(seconds))},
        data={"user_uuid": user_uuid, "message_id": message_id},
    )
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def status(client: httpx.Client, job_id: str) -> str:
    return client.get(f"{TRANSCRIPTIONS}/{job_id}").json()["status"]


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def journal_events(journal: Path) -> Counter[str]:
    """How many times each ``start|end <seconds>`` happened, over every run of the server (SlowEngines)."""
    if not journal.exists():
        return Counter()
    return Counter(line.split(" ", 1)[1] for line in journal.read_text().splitlines())
