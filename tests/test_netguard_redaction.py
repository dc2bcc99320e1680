"""What reaches the log, the database file and the answers, checked on a real server process run at DEBUG:

* URL secrets (query values, ``;`` path parameters, a token as the user name, a password) are redacted in the
  log, in the stored ``source`` and in every answer, for successful downloads and for failures;
* the transcript text never reaches the log (the database driver's SQL echo included), while it is in the
  database: so the check on the log is not vacuous.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audio_fixtures import wav_bytes
from tests.support.http_files import serving
from tests.support.processes import ServerProcess, db_rows, free_port, server_env, server_process
from tests.support.tiny_parakeet import expected_text, render
from wazo_stt.audio.fetch import UNREACHABLE_MESSAGE

PIECES = [("▁bon", 0.4), ("jour", 0.8), ("▁the", 1.3), ("▁cat", 1.8), ("▁hello", 2.3)]
AUDIO = wav_bytes(render(PIECES, duration=3.0), 16000)
TEXT = expected_text([p for p, _ in PIECES])
TRANSCRIPTIONS = "/v1/audio/transcriptions"

# Each URL shape, its secret, and the source we store instead. {base} is the loopback PBX, {hostport} its host.
SHAPES = {
    "query": ("{base}/vm/1.wav?token=SECRET-QUERY&u=7", "SECRET-QUERY", "{base}/vm/1.wav?token=REDACTED&u=REDACTED"),
    "path-param": ("{base}/vm/2.wav;token=SECRET-PARAM", "SECRET-PARAM", "{base}/vm/2.wav;token=REDACTED"),
    "user-token": ("http://SECRET-USER@{hostport}/vm/3.wav", "SECRET-USER", "http://REDACTED@{hostport}/vm/3.wav"),
    "password": ("http://admin:SECRET-PASS@{hostport}/vm/4.wav", "SECRET-PASS", "http://REDACTED@{hostport}/vm/4.wav"),
}
FILES = {"/vm/1.wav": AUDIO, "/vm/2.wav;token=SECRET-PARAM": AUDIO, "/vm/3.wav": AUDIO, "/vm/4.wav": AUDIO}
SECRETS = [secret for _, secret, _ in SHAPES.values()] + ["SECRET-DOWN", "admin"]


@pytest.fixture(scope="module")
def debug_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("redaction")
    # LOG_LEVELS opens the HTTP client's own loggers (which print request URLs and headers) to test their filter.
    env = server_env(
        tiny_model_dir, directory / "jobs.db", log_level="debug", log_levels="httpx=debug,httpcore=debug"
    )
    with server_process(env, directory / "server.log") as server:
        server.start()
        yield server


def _poll(client: httpx.Client, job_id: str) -> list[dict]:
    answers = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answers.append(client.get(f"{TRANSCRIPTIONS}/{job_id}").json())
        if answers[-1]["status"] in ("completed", "failed"):
            return answers
        time.sleep(0.05)
    raise TimeoutError(job_id)


@pytest.fixture(scope="module")
def exchanged(debug_server: ServerProcess) -> dict[str, object]:
    """Run every shape (and a failing URL) once; keep every answer body for the checks."""
    answers: list[str] = []
    with serving(FILES) as (base, seen), httpx.Client(base_url=debug_server.url, timeout=30) as client:
        hostport = base.removeprefix("http://")
        for n, (name, (template, _, _)) in enumerate(SHAPES.items()):
            url = template.format(base=base, hostport=hostport)
            form = {"url": url, "user_uuid": "u1", "message_id": f"m{n}"}
            submitted = client.post(TRANSCRIPTIONS, data=form)
            assert submitted.status_code == 200, (name, submitted.text)
            answers.append(submitted.text)
            polled = _poll(client, submitted.json()["job_id"])
            assert polled[-1]["status"] == "completed" and polled[-1]["text"] == TEXT, (name, polled[-1])
            answers.extend(map(str, polled))
            answers.append(client.get(f"{TRANSCRIPTIONS}/{submitted.json()['job_id']}/result").text)
        sync = client.post(TRANSCRIPTIONS, data={"url": f"{base}/vm/1.wav?token=SECRET-QUERY"})
        assert sync.json()["text"] == TEXT
        answers.append(sync.text)
        down = f"http://admin:SECRET-DOWN@127.0.0.1:{free_port()}/vm.wav;sid=SECRET-DOWN?token=SECRET-DOWN"
        failed = client.post(TRANSCRIPTIONS, data={"url": down})
        assert failed.status_code == 400
        assert failed.json()["error"]["message"] == UNREACHABLE_MESSAGE  # the reason is for the log only
        answers.append(failed.text)
        assert len(seen) == len(SHAPES) + 1  # the secrets did reach the PBX: only our copies are redacted
    time.sleep(0.5)  # let the log lines of the last request be written
    return {"answers": answers, "hostport": hostport, "base": base}


def _database_bytes(server: ServerProcess) -> bytes:
    db = Path(server.env["DB_PATH"])
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def test_url_secrets_are_not_in_the_answers(exchanged: dict[str, object]) -> None:
    answers = "\n".join(exchanged["answers"])  # type: ignore[arg-type]
    for secret in SECRETS[:-1]:
        assert secret not in answers


def test_url_secrets_are_not_in_the_database_file(debug_server: ServerProcess, exchanged: dict[str, object]) -> None:
    stored = _database_bytes(debug_server)
    assert TEXT.encode() in stored  # the rows are really in these bytes
    for secret in SECRETS:
        assert secret.encode() not in stored, secret


@pytest.mark.parametrize("shape", list(SHAPES))
def test_stored_source_is_the_redacted_url(
    debug_server: ServerProcess, exchanged: dict[str, object], shape: str
) -> None:
    n = list(SHAPES).index(shape)
    expected = SHAPES[shape][2].format(base=exchanged["base"], hostport=exchanged["hostport"])
    rows = db_rows(Path(debug_server.env["DB_PATH"]), "SELECT source FROM jobs WHERE message_id = ?", (f"m{n}",))
    assert rows == [(expected,)]


def test_url_secrets_are_not_in_the_log(debug_server: ServerProcess, exchanged: dict[str, object]) -> None:
    log = debug_server.log()
    assert "HTTP Request: GET" in log  # httpx did log the requests (redacted, not silenced)
    assert "token=REDACTED" in log and ";sid=REDACTED" in log
    for secret in SECRETS[:-1]:
        assert secret not in log, secret
    # The failure's reason (refused) went to the log, though the client got the one generic error.
    assert "Could not connect to the audio URL's host" in log


def test_transcript_text_is_not_in_the_log_at_debug(debug_server: ServerProcess, exchanged: dict[str, object]) -> None:
    log = debug_server.log()
    assert " DEBUG " in log  # the server did run at DEBUG
    for words in (TEXT, "bonjour the cat"):
        assert words not in log
    assert TEXT.encode() in _database_bytes(debug_server)
