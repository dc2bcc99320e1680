"""``wazo-stt download-model`` against a loopback fake Hub: flat real files, no-op, resume, corruption, offline.

The command runs as a subprocess with ``HF_ENDPOINT`` set, as an operator would run it: huggingface_hub reads
its endpoint and timeouts when imported, so a fresh process is the honest way to point it elsewhere. The cases
that only differ in what the Hub answers run in-process, with the endpoint patched.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from tests.support.fake_hub import COMMIT, FakeHub, fake_hub, git_blob_sha1
from wazo_stt.cli import build_parser, main
from wazo_stt.config import Settings
from wazo_stt.models.catalog import PARAKEET_MODELS
from wazo_stt.models.download import STATE_DIR, wanted_files
from wazo_stt.models.hub import RemoteFile

REPO = "istupakov/parakeet-tdt-0.6b-v3-onnx"
ENCODER = "encoder-model.int8.onnx"
# Big enough to arrive in several network reads, so an interrupted transfer leaves a partial file behind.
FILES = {
    ENCODER: bytes(range(256)) * 4096 * 3,  # 3 MiB
    "decoder_joint-model.int8.onnx": b"decoder" * 1000,
    "nemo128.onnx": b"mel front end",
    "encoder-model.onnx": b"fp32 encoder (not wanted for int8)",
    "vocab.txt": "<unk> 0\n\u2581a 1\n<blk> 2\n".encode(),
    "config.json": b'{"model_type": "nemo-conformer-tdt", "features_size": 128, "subsampling_factor": 8}\n',
    "README.md": b"# not wanted\n",
}
INT8 = [ENCODER, "decoder_joint-model.int8.onnx", "nemo128.onnx", "vocab.txt", "config.json"]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with fake_hub({REPO: dict(FILES)}) as served:
        yield served


def _env(endpoint: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    # HF_HOME in tmp: no token saved on this machine leaks into the test, and none is written elsewhere.
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    return env


def _cli(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wazo_stt", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_complete(model_dir: Path) -> None:
    for name in INT8:
        path = model_dir / name
        assert path.is_file() and not path.is_symlink(), name
        assert path.read_bytes() == FILES[name], name
    assert not (model_dir / "encoder-model.onnx").exists()  # only the requested quantization
    assert not (model_dir / "README.md").exists()
    links = [p for p in model_dir.rglob("*") if p.is_symlink()]
    assert links == []
    assert list((model_dir / STATE_DIR).glob("*.incomplete")) == []


@pytest.fixture
def in_process_hub(hub: FakeHub, monkeypatch, tmp_path) -> FakeHub:
    """Point this process's huggingface_hub at the fake hub, as HF_ENDPOINT would at import time."""
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)
    return hub


def test_fresh_download_then_noop(hub: FakeHub, tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "parakeet"
    env = _env(hub.url, tmp_path, HF_TOKEN="hf_test_token")

    first = _cli("download-model", "--dir", str(model_dir), env=env)

    assert first.returncode == 0, first.stderr
    assert "downloaded" in first.stdout and "Traceback" not in first.stderr
    _assert_complete(model_dir)
    api_call = hub.requests[0]
    assert api_call.path == f"/api/models/{REPO}/revision/main"
    assert api_call.headers.get("authorization") == "Bearer hf_test_token"  # HF_TOKEN honoured
    # Files are fetched at the commit the model info named, so a push mid-download cannot mix revisions.
    resolved = [r.path for r in hub.file_requests() if "/resolve/" in r.path]
    assert len(resolved) == len(INT8) and all(f"/resolve/{COMMIT}/" in path for path in resolved)

    hub.requests.clear()
    second = _cli("download-model", "--dir", str(model_dir), env=env)

    assert second.returncode == 0, second.stderr
    assert "already present" in second.stdout
    assert hub.file_requests() == []  # only the model info was asked for
    _assert_complete(model_dir)


def test_interrupted_download_resumes_with_range(hub: FakeHub, tmp_path: Path) -> None:
    model_dir = tmp_path / "parakeet"
    env = _env(hub.url, tmp_path)
    cut = 2 * 1024 * 1024
    hub.stall_after[ENCODER] = cut
    proc = subprocess.Popen(
        [sys.executable, "-m", "wazo_stt", "download-model", "--dir", str(model_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert hub.stalled.wait(20), "the download never reached the encoder"
        partials = list((model_dir / STATE_DIR).glob(f"{ENCODER}.*.incomplete"))
        deadline = time.monotonic() + 10
        while not (partials and partials[0].stat().st_size == cut) and time.monotonic() < deadline:
            time.sleep(0.05)  # the client is still writing what the server sent before it stalled
            partials = list((model_dir / STATE_DIR).glob(f"{ENCODER}.*.incomplete"))
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "resume" in stderr and "Traceback" not in stderr
    assert len(partials) == 1
    kept = partials[0].stat().st_size
    assert kept == cut

    del hub.stall_after[ENCODER]
    hub.requests.clear()
    resumed = _cli("download-model", "--dir", str(model_dir), env=env)

    assert resumed.returncode == 0, resumed.stderr
    encoder_gets = [r for r in hub.file_requests() if r.path.startswith("/cdn/") and r.range]
    assert [r.range for r in encoder_gets] == [f"bytes={kept}-"]
    _assert_complete(model_dir)


def test_corrupted_and_symlinked_files_are_replaced(in_process_hub: FakeHub, tmp_path: Path, capsys) -> None:
    model_dir = tmp_path / "parakeet"
    assert main(["download-model", "--dir", str(model_dir)]) == 0
    encoder = model_dir / ENCODER
    damaged = bytearray(encoder.read_bytes())
    damaged[1000] ^= 0xFF  # same size: only the hash can tell
    encoder.write_bytes(bytes(damaged))
    elsewhere = tmp_path / "cache-vocab.txt"
    elsewhere.write_bytes(FILES["vocab.txt"])
    (model_dir / "vocab.txt").unlink()
    (model_dir / "vocab.txt").symlink_to(elsewhere)  # what a hub cache layout would leave
    capsys.readouterr()
    in_process_hub.requests.clear()

    assert main(["download-model", "--dir", str(model_dir)]) == 0

    out = capsys.readouterr().out
    assert ENCODER in out and "vocab.txt" in out
    assert sorted(Path(r.path).name for r in in_process_hub.file_requests() if "/resolve/" in r.path) == [
        ENCODER,
        "vocab.txt",
    ]
    _assert_complete(model_dir)
    assert elsewhere.read_bytes() == FILES["vocab.txt"]  # the link was replaced, not written through


def test_hub_serving_wrong_bytes_is_an_error(in_process_hub: FakeHub, tmp_path: Path, capsys) -> None:
    model_dir = tmp_path / "parakeet"
    in_process_hub.tamper[ENCODER] = b"X" * len(FILES[ENCODER])

    assert main(["download-model", "--dir", str(model_dir), "--no-progress"]) == 1

    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "does not match the Hub's sha256" in lines[-1]
    assert ENCODER in lines[-1]
    assert not (model_dir / ENCODER).exists()
    assert list((model_dir / STATE_DIR).glob("*.incomplete")) == []  # the bad bytes are not resumed later


def test_small_file_checked_by_git_blob_sha1(in_process_hub: FakeHub, tmp_path: Path, capsys) -> None:
    in_process_hub.tamper["vocab.txt"] = FILES["vocab.txt"].replace(b"a", b"b")

    assert main(["download-model", "--dir", str(tmp_path), "--no-progress"]) == 1

    assert "git blob sha1" in capsys.readouterr().err


def test_offline_fails_fast_with_one_line(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()

    result = _cli("download-model", "--dir", str(tmp_path / "parakeet"), env=_env(endpoint, tmp_path), timeout=20)

    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach Hugging Face ({endpoint}) to download parakeet-tdt-0.6b-v3:")
    assert "by hand" in lines[0]
    assert not (tmp_path / "parakeet").exists()  # nothing left behind: no empty .cache folder


def test_failed_download_keeps_what_was_there_and_the_partial_file(in_process_hub: FakeHub, tmp_path: Path):
    target = tmp_path / "models"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    in_process_hub.status = 401
    assert main(["download-model", "--dir", str(target)]) == 1
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # ours removed, the operator's kept


def test_offline_after_a_verified_download_is_fine(in_process_hub: FakeHub, tmp_path: Path, monkeypatch, capsys):
    assert main(["download-model", "--dir", str(tmp_path)]) == 0
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    capsys.readouterr()

    assert main(["download-model", "--dir", str(tmp_path)]) == 0
    assert "already present" in capsys.readouterr().out

    (tmp_path / "vocab.txt").write_text("tampered")  # the record vouches for the bytes, not for the names
    assert main(["download-model", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach Hugging Face" in err and f"damaged in {tmp_path}: vocab.txt" in err


def test_offline_with_files_copied_by_hand_is_a_warning(tmp_path: Path, monkeypatch, capsys) -> None:
    # What the offline error tells operators to do; scripts/serve.sh then runs download-model on every start.
    for name in INT8:
        (tmp_path / name).write_bytes(FILES[name])
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")

    assert main(["download-model", "--dir", str(tmp_path)]) == 0

    captured = capsys.readouterr()
    assert "not verified" in captured.out
    assert captured.err.startswith("warning: cannot reach Hugging Face") and captured.err.count("\n") == 1


def test_hf_hub_offline_is_honoured(in_process_hub: FakeHub, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert main(["download-model", "--dir", str(tmp_path)]) == 1

    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert in_process_hub.requests == []


def test_unpublished_quantization_names_the_missing_files(in_process_hub: FakeHub, tmp_path: Path, capsys):
    assert main(["download-model", "--dir", str(tmp_path), "--quantization", "int4"]) == 1

    err = capsys.readouterr().err
    assert "encoder-model.int4.onnx" in err and "int4" in err and err.count("\n") == 1


@pytest.mark.parametrize(("status", "words"), [(401, "HF_TOKEN"), (503, "HTTP 503")])
def test_hub_refusals_are_one_line(in_process_hub: FakeHub, tmp_path: Path, capsys, status: int, words: str):
    in_process_hub.status = status

    assert main(["download-model", "--dir", str(tmp_path)]) == 1

    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and err.startswith("error: ")


def test_one_model_list_for_settings_cli_and_download() -> None:
    download = next(a for a in build_parser()._subparsers._group_actions[0].choices["download-model"]._actions
                    if a.dest == "model")
    assert set(download.choices) == set(PARAKEET_MODELS)
    for model_id in PARAKEET_MODELS:
        assert Settings(_env_file=None, model_name=model_id).model_name == model_id
    with pytest.raises(ValueError, match=r"choose one of parakeet-tdt-0\.6b-v3, parakeet-tdt-0\.6b-v2"):
        Settings(_env_file=None, model_name="parakeet-tdt-1.1b")
    assert all(m.repo_id.endswith("-onnx") for m in PARAKEET_MODELS.values())


def test_the_downloader_does_not_load_the_inference_runtime() -> None:
    # download-model runs in a setup container: it must not need ONNX Runtime or onnx-asr to learn file names.
    code = "import sys, wazo_stt.cli, wazo_stt.models.download; print(sorted(m for m in ('onnxruntime', 'onnx_asr')" \
        " if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_wanted_files_follow_the_engine() -> None:
    required, optional = wanted_files("int8")
    assert required == ["encoder-model.int8.onnx", "decoder_joint-model.int8.onnx", "vocab.txt", "config.json"]
    assert "nemo128.onnx" in optional
    # fp32: the encoder's weights live in an external-data file next to it.
    assert "encoder-model.onnx.data" in wanted_files("")[1]


def test_git_blob_hash_matches_git() -> None:
    # `git hash-object` of an empty file and of "hello\n": well-known values.
    for data, expected in [
        (b"", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"),
        (b"hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"),
    ]:
        digest = RemoteFile("f", len(data), git_sha1=expected).hasher()
        digest.update(data)
        assert digest.hexdigest() == expected == git_blob_sha1(data)
    assert RemoteFile("f", 1, sha256="x").hasher().name == hashlib.sha256().name


def test_hub_down_after_a_verified_download_is_fine(in_process_hub: FakeHub, tmp_path: Path, capsys) -> None:
    assert main(["download-model", "--dir", str(tmp_path)]) == 0
    in_process_hub.status = 503
    capsys.readouterr()

    assert main(["download-model", "--dir", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert "already present" in out and "HTTP 503" in out


def _stale_partial(model_dir: Path, data: bytes) -> Path:
    """A partial encoder download as an interrupted run leaves it, named after the expected sha256."""
    partial = model_dir / STATE_DIR / f"{ENCODER}.{hashlib.sha256(FILES[ENCODER]).hexdigest()[:16]}.incomplete"
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data)
    return partial


def test_a_server_ignoring_range_restarts_the_file(in_process_hub: FakeHub, tmp_path: Path) -> None:
    _stale_partial(tmp_path, b"?" * 1000)  # wrong bytes: only a full download from zero can end right
    in_process_hub.ignore_range = True

    assert main(["download-model", "--dir", str(tmp_path)]) == 0

    encoder_gets = [r for r in in_process_hub.file_requests() if r.path.startswith("/cdn/") and r.range]
    assert [r.range for r in encoder_gets] == ["bytes=1000-"]
    _assert_complete(tmp_path)


def test_a_damaged_partial_is_dropped_and_the_next_run_succeeds(in_process_hub: FakeHub, tmp_path: Path, capsys):
    partial = _stale_partial(tmp_path, b"?" * 1000)

    assert main(["download-model", "--dir", str(tmp_path)]) == 1
    assert "does not match" in capsys.readouterr().err
    assert not partial.exists()

    assert main(["download-model", "--dir", str(tmp_path)]) == 0
    _assert_complete(tmp_path)
