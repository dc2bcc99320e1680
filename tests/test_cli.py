"""``wazo-stt transcribe`` on the tiny Parakeet model, and the command line's own promises (a fast ``--help``).

The tiny model hears tone bursts, which Silero rightly calls non-speech, so these runs set ENABLE_VAD=false as
the server tests do; everything else is the server's pipeline: decode_audio, load_engines, formats.render.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import srt

from tests.support.audio_fixtures import write_wav
from tests.support.speech import spoken
from tests.support.tiny_parakeet import expected_text, render
from wazo_stt.cli import main

PIECES = [("▁hello", 0.5), ("▁world", 1.2), (".", 1.8)]
TEXT = expected_text([p for p, _ in PIECES])
OTHER = [("▁the", 0.4), ("▁cat", 1.0)]


@pytest.fixture
def cli_env(monkeypatch, tmp_path, tiny_model_dir) -> dict[str, str]:
    """The environment of an operator who set MODEL_PATH; cwd in tmp so no developer's .env is read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    monkeypatch.setenv("ENABLE_VAD", "false")
    return dict(os.environ)


@pytest.fixture
def hello_wav(tmp_path) -> Path:
    return write_wav(tmp_path / "hello.wav", render(PIECES, duration=3.0), 16000)


@pytest.fixture
def cat_wav(tmp_path) -> Path:
    return write_wav(tmp_path / "cat.wav", render(OTHER, duration=2.0), 16000)


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from wazo_stt import cli; cli.build_parser().format_help();"
        "heavy = ('onnxruntime', 'onnx_asr', 'av', 'huggingface_hub', 'fastapi', 'uvicorn', 'sqlalchemy', 'httpx');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == ""


def test_help_lists_the_commands_and_says_vad_needs_no_download(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in ("serve", "download-model", "transcribe"))
    assert "`" not in out  # the docstring's ``quotes`` are not printed as such


def test_transcribe_with_the_embedded_whisper_needs_no_parakeet(cli_env, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "no-parakeet-here"))
    monkeypatch.setenv("ENABLE_VAD", "true")
    wav = write_wav(tmp_path / "speech.wav", spoken("The weather is nice today."), 16000)

    assert main(["transcribe", str(wav), "--model", "whisper-tiny.en"]) == 0

    assert "today" in capsys.readouterr().out.lower()
    with pytest.raises(SystemExit):
        main(["download-model", "--help"])
    assert "Silero VAD model needs no download" in " ".join(capsys.readouterr().out.split())


def test_transcribe_subprocess_prints_text(cli_env, hello_wav) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wazo_stt", "transcribe", str(hello_wav)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == TEXT + "\n"
    assert "Traceback" not in result.stderr


def test_transcribe_srt_to_stdout(cli_env, hello_wav, capsys) -> None:
    assert main(["transcribe", str(hello_wav), "--format", "srt"]) == 0

    cues = list(srt.parse(capsys.readouterr().out))
    assert " ".join(c.content for c in cues) == TEXT
    assert cues[0].start.total_seconds() == pytest.approx(0.5, abs=0.1)


def test_transcribe_output_dir_writes_one_file_each(cli_env, hello_wav, cat_wav, tmp_path, capsys) -> None:
    out_dir = tmp_path / "out"

    assert main(["transcribe", str(hello_wav), str(cat_wav), "--format", "vtt", "--output-dir", str(out_dir)]) == 0

    assert capsys.readouterr().out == ""
    assert sorted(p.name for p in out_dir.iterdir()) == ["cat.vtt", "hello.vtt"]
    hello = (out_dir / "hello.vtt").read_text(encoding="utf-8")
    assert hello.startswith("WEBVTT") and TEXT in hello
    assert expected_text([p for p, _ in OTHER]) in (out_dir / "cat.vtt").read_text(encoding="utf-8")


def test_verbose_json_with_words(cli_env, hello_wav, tmp_path) -> None:
    out_dir = tmp_path / "json"
    args = ["transcribe", str(hello_wav), "--format", "verbose_json", "--word-timestamps", "--output-dir", str(out_dir)]
    assert main(args) == 0
    body = json.loads((out_dir / "hello.json").read_text(encoding="utf-8"))
    assert body["text"] == TEXT and body["duration"] == pytest.approx(3.0)
    assert [w["word"] for w in body["words"]] == TEXT.split()


def test_bad_files_are_reported_and_skipped(cli_env, hello_wav, cat_wav, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio " * 20)
    missing = tmp_path / "missing.wav"

    assert main(["transcribe", str(hello_wav), str(bad), str(missing), str(cat_wav), "--format", "text"]) == 1

    captured = capsys.readouterr()
    # Several files to stdout: each under a header, as `head` does.
    assert captured.out == (f"==> {hello_wav} <==\n{TEXT}\n==> {cat_wav} <==\n{expected_text([p for p, _ in OTHER])}\n")
    errors = captured.err.strip().splitlines()
    assert errors[0].startswith(f"error: {bad}: Could not decode the audio")
    assert errors[1] == f"error: {missing}: No such file or directory"
    assert errors[2] == "error: 2 of 4 file(s) failed"
    assert "Traceback" not in captured.err


def test_missing_model_is_one_line(cli_env, hello_wav, tmp_path, capsys) -> None:
    empty = tmp_path / "no-model"

    assert main(["transcribe", str(hello_wav), "--model-dir", str(empty)]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"Parakeet model not found in {empty}" in err
    assert "wazo-stt download-model" in err


def test_same_stem_twice_is_refused_before_work(cli_env, hello_wav, tmp_path, capsys) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    twin = write_wav(other / "hello.wav", render(OTHER, duration=2.0), 16000)

    assert main(["transcribe", str(hello_wav), str(twin), "--output-dir", str(tmp_path / "out")]) == 2
    assert "hello.txt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unsupported_language_is_refused(cli_env, hello_wav, capsys) -> None:
    assert main(["transcribe", str(hello_wav), "--language", "ja"]) == 2
    assert "'ja' is not supported" in capsys.readouterr().err


def test_unknown_model_names_the_available_ones(cli_env, hello_wav, capsys) -> None:
    assert main(["transcribe", str(hello_wav), "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "parakeet-tdt-0.6b-v3" in err
