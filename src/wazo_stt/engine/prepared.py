"""Where Parakeet is loaded from: its files as downloaded, or a copy whose encoder has float convolutions.

The rewrite (engine/float_convs.py) gives the same encoder output in about 30% less time, but it reads and writes
the whole 650 MB encoder: a few seconds, done once and kept in ``MODEL_PATH/float-convs/`` beside a record of the
file it came from. The next start finds the record and loads the copy at once; a new download (another size or
modification time) is rewritten again. The copy's directory links to every other file of the model, so onnx-asr
loads it like the original.

The rewrite runs in a child process: the onnx package holds the whole model in Python objects while it works,
and the server's own peak memory should stay that of ONNX Runtime's load. Anything that goes wrong (a read-only
volume, a full disk, a graph that is not what we expect) is logged and the original files are served.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PREPARED_DIR = "float-convs"
RECORD = "source.json"
# Bump when float_convs.py changes what it writes: older copies are then made again.
REWRITE_VERSION = 1
REWRITE_TIMEOUT_SECONDS = 600


def parakeet_dir(model_dir: Path, encoder_name: str) -> tuple[Path, int]:
    """The directory to load Parakeet from, and how many convolutions its encoder runs in float (0: the original)."""
    source = model_dir / encoder_name
    target_dir = model_dir / PREPARED_DIR
    try:
        stamp = _stamp(source)
    except OSError:
        return model_dir, 0  # unreadable: loading it says why, as a ModelLoadError
    record = _read_record(target_dir / RECORD)
    if record is not None and record.get("source") == stamp:
        rewritten = int(record.get("rewritten", 0))
        if rewritten == 0:
            return model_dir, 0
        if (target_dir / encoder_name).is_file():
            return target_dir, rewritten
    if not _mentions(source, b"ConvInteger"):  # not a quantize_dynamic export (fp32, a test model): nothing to do
        return model_dir, 0
    try:
        rewritten = _prepare(model_dir, encoder_name, target_dir, stamp)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning(
            "Serving Parakeet's encoder as downloaded (about 40%% slower): could not make its float-convolution "
            "copy in %s (%s). Make MODEL_PATH writable, or set FLOAT_CONVS=false to skip this step.",
            target_dir,
            exc,
        )
        return model_dir, 0
    return (target_dir if rewritten else model_dir), rewritten


def _stamp(source: Path) -> dict[str, int]:
    info = source.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "version": REWRITE_VERSION}


def _mentions(path: Path, word: bytes, block: int = 1 << 24) -> bool:
    """Whether the file's bytes hold ``word`` (an operator's name is plain text in the protobuf), read a block at a
    time: mapping the whole file would count its 650 MB in the server's resident memory. False when unreadable:
    loading it then says why."""
    tail = b""
    with contextlib.suppress(OSError), path.open("rb") as file:
        while data := file.read(block):
            if word in tail + data[: len(word)] or word in data:
                return True
            tail = data[-len(word) :]
    return False


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _prepare(model_dir: Path, encoder_name: str, target_dir: Path, stamp: dict[str, int]) -> int:
    target_dir.mkdir(exist_ok=True)
    partial = _partial(target_dir / encoder_name)
    log.info("Rewriting Parakeet's depthwise convolutions as exact float convolutions (once per download)...")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "wazo_stt.engine.float_convs", str(model_dir / encoder_name), str(partial)],
            capture_output=True,
            text=True,
            timeout=REWRITE_TIMEOUT_SECONDS,
        )
        if done.returncode != 0:
            raise ValueError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
        rewritten = int(json.loads(done.stdout.strip().splitlines()[-1])["rewritten"])
        if rewritten:
            _link_other_files(model_dir, target_dir, encoder_name)
            os.replace(partial, target_dir / encoder_name)
    finally:
        partial.unlink(missing_ok=True)
    _write_record(target_dir / RECORD, {"source": stamp, "rewritten": rewritten})
    log.info("Parakeet's encoder: %d convolutions run in float, same output (%s)", rewritten, target_dir)
    return rewritten


def _link_other_files(model_dir: Path, target_dir: Path, encoder_name: str) -> None:
    """Relative links, so that the copy follows a file replaced by a later download and a moved volume."""
    for path in model_dir.iterdir():
        if path.name == encoder_name or not path.is_file():
            continue
        partial = _partial(target_dir / path.name)
        partial.unlink(missing_ok=True)
        partial.symlink_to(Path("..") / path.name)
        os.replace(partial, target_dir / path.name)


def _write_record(path: Path, record: dict) -> None:
    partial = _partial(path)
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, path)


def _partial(path: Path) -> Path:
    """Where ``path`` is written before ``os.replace`` puts it in place: per process, as another process may be
    preparing the same copy."""
    return path.with_name(f"{path.name}.{os.getpid()}.partial")
