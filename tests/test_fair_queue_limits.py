"""Queue limits of issue 14: MAX_QUEUE_AUDIO_SECS (a few huge files cannot fill the queue) and per-key rate
limits (RATE_LIMIT_PER_MINUTE), as 429s in OpenAI's shape with Retry-After."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from tests.support.jobs import TRANSCRIPTIONS, voicemail
from tests.support.server import running_server, wait_ready
from tests.test_store import new_job
from wazo_stt.api.rate_limit import RateLimiter
from wazo_stt.jobs.records import QueueFullError


async def test_the_queue_counts_audio_seconds_as_well_as_jobs(store):
    store.max_queue_audio_secs = 100
    huge = dataclasses.replace(new_job(), audio_duration=400.0)
    await store.submit(huge)  # alone in an empty queue: accepted (MAX_AUDIO_DURATION_SECS is its limit)
    with pytest.raises(QueueFullError) as refused:
        await store.submit(dataclasses.replace(new_job(), audio_duration=1.0))
    assert refused.value.audio
    claimed = await store.claim_next("w")  # a running job's audio no longer waits
    assert await store.complete(claimed.id, "w", _transcript())
    for _ in range(2):
        await store.submit(dataclasses.replace(new_job(), audio_duration=50.0))
    with pytest.raises(QueueFullError):
        await store.submit(dataclasses.replace(new_job(), audio_duration=0.5))


def test_the_rate_limiter_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # one every 10 s, bursts of 6
    assert [limiter.take("k") for _ in range(6)] == [0.0] * 6
    assert limiter.take("k") == pytest.approx(10.0)
    assert limiter.take("other") == 0.0  # each key its own bucket
    now[0] += 5
    assert limiter.take("k") == pytest.approx(5.0)
    now[0] += 5
    assert limiter.take("k") == 0.0
    assert limiter.retry_after(0.2) == "1" and limiter.retry_after(9.1) == "10"
    assert RateLimiter(0).take("k") == 0.0  # off




def test_audio_seconds_cap_is_a_429_with_retry_after(settings):
    changes = {"workers": 0, "max_queue_audio_secs": 5}
    with running_server(settings.model_copy(update=changes)) as url, httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(client)
        first = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", voicemail(3.0))},
                            data={"user_uuid": "u", "message_id": "1"})
        assert first.status_code == 200, first.text
        second = client.post(TRANSCRIPTIONS, files={"file": ("b.wav", voicemail(3.0))},
                             data={"user_uuid": "u", "message_id": "2"})
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) > 0
    error = second.json()["error"]
    assert error["code"] == "queue_full" and "MAX_QUEUE_AUDIO_SECS" in error["message"]


def test_a_key_past_its_rate_gets_429_with_retry_after_and_other_keys_do_not(settings):
    changes = {"workers": 0, "rate_limit_per_minute": 2, "api_keys": "key-one:t1,key-two:t2"}
    with running_server(settings.model_copy(update=changes)) as url, httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(client)

        def post(key: str, n: int) -> httpx.Response:
            return client.post(TRANSCRIPTIONS, headers={"Authorization": f"Bearer {key}"},
                               files={"file": ("a.wav", voicemail(2.0))},
                               data={"user_uuid": "u", "message_id": f"{key}-{n}"})

        assert [post("key-one", n).status_code for n in range(2)] == [200, 200]
        limited = post("key-one", 3)
        assert post("key-two", 1).status_code == 200
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 30
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def _transcript():
    from tests.test_store import TRANSCRIPT

    return TRANSCRIPT
