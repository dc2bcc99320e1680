"""API keys: off by default, on as soon as keys are configured; checked through the openai SDK and httpx against
the real server, key file rotation included."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import openai
import pytest
from fastapi import Depends, Request
from fastapi.testclient import TestClient

from tests.support.audio_fixtures import wav_bytes
from tests.support.server import running_server, wait_ready
from tests.support.tiny_parakeet import expected_text, render
from wazo_stt.api import create_app
from wazo_stt.api.auth import authenticate
from wazo_stt.auth import LOCAL_PRINCIPAL, ApiKeyError, KeyRing, Principal, key_id

PIECES = [("▁hello", 0.5), ("▁world", 1.2)]
AUDIO = wav_bytes(render(PIECES, duration=2.5), 16000)
TEXT = expected_text([p for p, _ in PIECES])
KEY_A = "sk-tenant-a-0123456789"
KEY_B = "sk-tenant-b-9876543210"
ADMIN = "sk-admin-5555"


# --------------------------------------------------------------------------------------------- KeyRing


def test_keys_off_by_default_everyone_is_the_local_admin() -> None:
    ring = KeyRing()
    assert not ring.enabled
    assert ring.authenticate(None) == LOCAL_PRINCIPAL == Principal(tenant="", admin=True, key_id="")
    assert ring.authenticate("anything") == LOCAL_PRINCIPAL


def test_inline_keys_map_to_their_tenant() -> None:
    ring = KeyRing(f"{KEY_A}:acme, {KEY_B}:globex,{ADMIN}:ops:admin")
    assert ring.enabled
    assert ring.authenticate(KEY_A) == Principal("acme", False, key_id(KEY_A))
    assert ring.authenticate(KEY_B) == Principal("globex", False, key_id(KEY_B))
    assert ring.authenticate(ADMIN) == Principal("ops", True, key_id(ADMIN))
    assert ring.authenticate(None) is None
    assert ring.authenticate("") is None
    assert ring.authenticate(KEY_A + "x") is None
    assert ring.authenticate(KEY_A[:-1]) is None


@pytest.mark.parametrize("value", ["nokey", "k:t:root", ":tenant", "key:", "a:b:c:d"])
def test_malformed_inline_keys_are_a_startup_error(value: str) -> None:
    with pytest.raises(ApiKeyError) as info:
        KeyRing(value)
    assert "nokey" not in str(info.value)  # the key itself is never in a message


def test_key_id_is_a_short_hash_not_the_key() -> None:
    assert len(key_id(KEY_A)) == 12 and key_id(KEY_A) not in KEY_A and key_id(KEY_A) != key_id(KEY_B)


def test_key_file_lines_comments_admin_and_bad_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# operators\n{KEY_A} acme\n\n{ADMIN} ops admin  # the operator\nsk-bad-line-secret\n")
    ring = KeyRing(file=path)
    assert ring.authenticate(KEY_A) == Principal("acme", False, key_id(KEY_A))
    assert ring.authenticate(ADMIN) == Principal("ops", True, key_id(ADMIN))
    assert ring.authenticate("sk-bad-line-secret") is None
    assert "line 5" in caplog.text and "sk-bad-line-secret" not in caplog.text


def test_an_empty_key_file_turns_keys_on_and_lets_nobody_in(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("")
    ring = KeyRing(file=path)
    assert ring.enabled and ring.authenticate(None) is None and ring.authenticate("x") is None


def test_a_missing_key_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyError):
        KeyRing(file=tmp_path / "absent")


def test_key_file_is_reread_when_it_changes_and_kept_when_it_vanishes(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{KEY_A} acme\n")
    ring = KeyRing(file=path)
    assert ring.authenticate(KEY_A) is not None and ring.authenticate(KEY_B) is None
    path.write_text(f"{KEY_B} acme\n")  # same size: the mtime (nanoseconds) or inode tells the change
    os.utime(path, ns=(1, 1))
    assert ring.authenticate(KEY_A) is None and ring.authenticate(KEY_B) is not None
    path.unlink()
    assert ring.authenticate(KEY_B) is not None  # unreadable: the last good keys stay


# --------------------------------------------------------------------------------------------- real server


@pytest.fixture
def keyed_settings(settings, tmp_path: Path):
    keys = tmp_path / "api-keys"
    keys.write_text(f"{KEY_B} globex\n")
    return settings.model_copy(update={"api_keys": f"{KEY_A}:acme", "api_keys_file": keys})


@pytest.fixture
def keyed_url(keyed_settings):
    with running_server(keyed_settings) as url:
        with httpx.Client(base_url=url) as client:
            wait_ready(client)
        yield url


def _sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def _assert_invalid_key(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "invalid_api_key")


@pytest.mark.parametrize("key", ["sk-wrong", KEY_A + "0", "", "Basic"])
def test_sdk_with_a_wrong_key_gets_authentication_error(keyed_url: str, key: str) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        _sdk(keyed_url, key or "x").audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO))
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        _sdk(keyed_url, key or "x").models.list()


def test_sdk_with_the_right_key_transcribes(keyed_url: str) -> None:
    for key in (KEY_A, KEY_B):
        result = _sdk(keyed_url, key).audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO))
        assert result.text == TEXT
        assert [m.id for m in _sdk(keyed_url, key).models.list()]


def test_every_route_but_health_needs_a_key(keyed_url: str) -> None:
    with httpx.Client(base_url=keyed_url, timeout=30) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Authorization": "Bearer sk-wrong"}).status_code == 200
        for method, path in [
            ("GET", "/v1/models"),
            ("GET", "/v1/models/whisper-1"),
            ("GET", "/v1/audio/transcriptions/status"),
            ("GET", "/v1/audio/transcriptions/lookup?user_uuid=u&message_id=m"),
            ("GET", "/v1/audio/transcriptions/some-job"),
            ("GET", "/v1/audio/transcriptions/some-job/result"),
            ("POST", "/v1/audio/transcriptions"),
        ]:
            _assert_invalid_key(client.request(method, path))
            _assert_invalid_key(client.request(method, path, headers={"Authorization": "Bearer nope"}))
            _assert_invalid_key(client.request(method, path, headers={"Authorization": KEY_A}))  # no scheme
        ok = client.get("/v1/audio/transcriptions/status", headers={"Authorization": f"Bearer {KEY_A}"})
        assert ok.status_code == 200


def test_a_rotated_key_file_applies_without_a_restart(keyed_url: str, keyed_settings) -> None:
    path: Path = keyed_settings.api_keys_file
    with httpx.Client(base_url=keyed_url, timeout=30) as client:
        def status(key: str) -> int:
            return client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code

        assert status(KEY_B) == 200
        new_key = "sk-rotated-key-42"
        replacement = path.with_suffix(".new")
        replacement.write_text(f"{new_key} globex\n")
        replacement.replace(path)  # an atomic swap, as a secret manager does it
        assert status(new_key) == 200
        assert status(KEY_B) == 401
        assert status(KEY_A) == 200  # API_KEYS is not touched by the file


def test_keys_off_needs_no_key(client: httpx.Client) -> None:
    assert client.get("/v1/models").status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer whatever"}).status_code == 200


def test_keys_never_reach_the_log_or_the_database(
    keyed_url: str, keyed_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _sdk(keyed_url, KEY_A).audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO))
    with pytest.raises(openai.AuthenticationError):
        _sdk(keyed_url, "sk-wrong-secret").models.list()
    assert KEY_A not in caplog.text and "sk-wrong-secret" not in caplog.text
    db: Path = keyed_settings.db_path
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert TEXT.encode() in stored  # the job is there...
    assert KEY_A.encode() not in stored  # ...its key is not


# --------------------------------------------------------------------------------------------- CORS warning


@pytest.mark.parametrize(
    ("host", "cors", "keys", "warned"),
    [
        ("0.0.0.0", "*", "", True),
        ("192.168.1.5", "https://portal.example.com,*", "", True),
        ("0.0.0.0", "*", f"{KEY_A}:acme", False),
        ("0.0.0.0", "https://portal.example.com", "", False),
        ("127.0.0.1", "*", "", False),
        ("::1", "*", "", False),
        ("localhost", "*", "", False),
    ],
)
def test_open_cors_without_keys_on_a_network_bind_is_warned(
    settings, caplog: pytest.LogCaptureFixture, host: str, cors: str, keys: str, warned: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="wazo_stt.api.app")
    create_app(settings.model_copy(update={"host": host, "cors_origins": cors, "api_keys": keys}))
    assert any("CORS_ORIGINS=*" in r.getMessage() for r in caplog.records) is warned


# --------------------------------------------------------------------------------------------- the principal


@pytest.mark.parametrize(
    ("keys", "header", "expected"),
    [
        ("", None, {"tenant": "", "admin": True}),  # keys off: the local admin
        (f"{KEY_A}:acme", f"Bearer {KEY_A}", {"tenant": "acme", "admin": False, "key_id": key_id(KEY_A)}),
        (f"{ADMIN}:ops:admin", f"bearer {ADMIN}", {"tenant": "ops", "admin": True, "key_id": key_id(ADMIN)}),
    ],
)
def test_routes_and_middleware_get_the_principal(settings, keys: str, header: str | None, expected: dict) -> None:
    """Routes added to the app (now or later) get the key's principal, as a dependency and on request.state."""
    app = create_app(settings.model_copy(update={"api_keys": keys}))

    @app.get("/probe")
    async def probe(request: Request, principal: Principal = Depends(authenticate)) -> dict:
        assert request.state.principal is principal
        return {"tenant": principal.tenant, "admin": principal.admin, "key_id": principal.key_id}

    with TestClient(app) as client:  # the lifespan runs: the real store and workers
        answer = client.get("/probe", headers={"Authorization": header} if header else {})
        assert answer.status_code == 200
        assert answer.json().items() >= expected.items()
        if keys:
            assert client.get("/probe").status_code == 401
