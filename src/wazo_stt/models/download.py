"""Make a directory hold a verified copy of a Parakeet model (the istupakov ONNX export), fetched from Hugging Face.

This is the ``download-model`` run: which files a quantization needs, what is already there and sound, what to
fetch, the record of what was verified, and what a run without network may still accept. Talking to the Hub (its
API, the resumable transfer of one file, the hashes) is :mod:`wazo_stt.models.hub`'s.

Files land as plain files directly in the target directory: no cache, no symlinks (ONNX Runtime refuses an
external-data model reached through a symlink, and a Docker volume should hold the bytes, not links to a cache
outside it). Every file is checked against the Hub's metadata: size, and sha256 for LFS files or the git blob
sha1 for small ones. Partial files and the record of what was verified live in ``<dir>/.cache/wazo-stt/``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from wazo_stt.models.catalog import PARAKEET_MODELS, model_files
from wazo_stt.models.hub import (
    DownloadError,
    RemoteFile,
    Unavailable,
    download_file,
    hub_client,
    hub_endpoint,
    is_valid,
    list_repository,
    reason_of,
    resolve_url,
)

log = logging.getLogger(__name__)

# Part of the export but not required by onnx-asr 0.12 (it carries its own mel front end); fetched when the
# repository has it so the directory is the complete export, usable by other onnx-asr versions and tools.
OPTIONAL_FILES = ("nemo128.onnx",)

STATE_DIR = Path(".cache") / "wazo-stt"
MANIFEST = "manifest.json"


@dataclass
class DownloadResult:
    """What a run did, for the command to report."""

    model_id: str
    repo_id: str
    directory: Path
    commit: str | None
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    offline_reason: str | None = None  # set when the Hub was unreachable: only local checks were possible
    verified: bool = True  # False: offline, and no record of an earlier verification (files copied by hand)

    @property
    def nothing_to_do(self) -> bool:
        return not self.downloaded


def wanted_files(quantization: str) -> tuple[list[str], list[str]]:
    """(required, optional) file names for a quantization.

    Required are those the engine loads (:func:`model_files`); optional are the mel front end and the external
    weights of an unquantized export (``encoder-model.onnx.data``: more than 2 GB does not fit one protobuf;
    onnx-asr accepts ``.onnx.data`` and ``.onnx_data``), fetched when the repository has them.
    """
    required = model_files(quantization)
    onnx = [name for name in required if name.endswith(".onnx")]
    optional = [*OPTIONAL_FILES, *(f"{name}.data" for name in onnx), *(f"{name}_data" for name in onnx)]
    return required, optional


def download_model(
    model_id: str,
    directory: Path,
    *,
    quantization: str = "int8",
    revision: str = "main",
    endpoint: str | None = None,
    token: str | bool | None = None,
    progress: bool = True,
    say: Callable[[str], None] = log.info,
) -> DownloadResult:
    """Make `directory` hold a verified copy of the model's files, downloading only what is missing or wrong.

    `say` gets a line per file fetched (the progress bar only shows on a terminal). Raises DownloadError (one
    line) for every failure an operator can act on: the Hub unreachable (unless the files are already here),
    access refused, a file the Hub does not have, bytes that do not match its hashes, a directory not writable.
    """
    if model_id not in PARAKEET_MODELS:
        raise DownloadError(f"unknown model {model_id!r}; choose one of {', '.join(sorted(PARAKEET_MODELS))}")

    directory = Path(directory).expanduser()
    state = directory / STATE_DIR
    created = [p for p in (state, *state.parents) if not p.exists() and p.is_relative_to(directory.parent)]
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {directory}: {reason_of(exc)}") from None
    try:
        return _download_into(model_id, directory, state, quantization, revision, endpoint, token, progress, say)
    except BaseException:
        _remove_empty(created)  # a failed first run leaves no empty .cache folder behind (a resumable part stays)
        raise


def _remove_empty(directories: list[Path]) -> None:
    """Remove the directories this run created, deepest first, where they are still empty."""
    for path in directories:
        try:
            path.rmdir()
        except OSError:
            return  # not empty (a partial download to resume) or already gone: keep it and its parents


def _download_into(
    model_id: str,
    directory: Path,
    state: Path,
    quantization: str,
    revision: str,
    endpoint: str | None,
    token: str | bool | None,
    progress: bool,
    say: Callable[[str], None],
) -> DownloadResult:
    from huggingface_hub import constants

    repo_id = PARAKEET_MODELS[model_id].repo_id
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    required, optional = wanted_files(quantization)
    result = DownloadResult(model_id=model_id, repo_id=repo_id, directory=directory, commit=None)

    unreachable = (
        f"cannot reach Hugging Face ({endpoint}) to download {model_id}: {{reason}}. "
        f"Copy the files into {directory} by hand or retry with internet."
    )

    with hub_client(token) as client:
        try:
            if constants.is_offline_mode():
                raise _Offline("HF_HUB_OFFLINE is set")
            commit, remote = list_repository(client, endpoint, repo_id, revision)
        except (_Offline, Unavailable, httpx.TransportError) as exc:
            reason = reason_of(exc)
            problem, verified = _offline_check(directory, repo_id, required)
            if problem:
                raise DownloadError(unreachable.format(reason=f"{reason}; {problem}")) from None
            result.offline_reason, result.verified, result.present = reason, verified, required
            return result

        result.commit = commit
        missing = [name for name in required if name not in remote]
        if missing:
            raise DownloadError(
                f"{repo_id}@{revision} has no {', '.join(missing)}"
                + (f" (is quantization {quantization!r} published there?)" if quantization else "")
            )
        files = [remote[name] for name in required + [n for n in optional if n in remote]]
        for remote_file in files:
            target = directory / remote_file.name
            if is_valid(target, remote_file):
                result.present.append(remote_file.name)
                continue
            url = resolve_url(endpoint, repo_id, commit, remote_file.name)
            try:
                download_file(client, url, remote_file, target, state, progress=progress, say=say)
            except httpx.TransportError as exc:
                raise DownloadError(
                    unreachable.format(reason=f"{remote_file.name}: {reason_of(exc)}")
                    + " Run the command again to resume."
                ) from None
            except OSError as exc:
                raise DownloadError(f"cannot write {remote_file.name} in {directory}: {reason_of(exc)}") from None
            result.downloaded.append(remote_file.name)

    _write_manifest(state / MANIFEST, repo_id, commit, quantization, files)
    links = [p.name for p in directory.iterdir() if p.is_symlink() and p.name in {f.name for f in files}]
    if links:  # download_file replaces files, so this only trips on a link made after the check above
        raise DownloadError(f"{', '.join(links)} in {directory} are symlinks; ONNX Runtime needs real files")
    return result


class _Offline(Exception):
    """HF_HUB_OFFLINE is set: no request at all."""


def _write_manifest(path: Path, repo_id: str, commit: str, quantization: str, files: Iterable[RemoteFile]) -> None:
    """Record what was verified against the Hub, so a later run without network can still vouch for the files."""
    record = {
        "repo_id": repo_id,
        "commit": commit,
        "quantization": quantization,
        "files": {f.name: f.to_json() for f in files},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _offline_check(directory: Path, repo_id: str, required: list[str]) -> tuple[str | None, bool]:
    """Without the Hub: (what is wrong with the local copy or None, whether its hashes could be checked).

    Files verified online by an earlier run are checked against the hashes recorded then, so damage is still
    caught. Files copied by hand have no record (or one about another model): present is all that can be said,
    and the server will tell if ONNX Runtime cannot load them. Refusing them would stop `scripts/serve.sh` on
    every offline start, after the error message itself told the operator to copy the files by hand.
    """
    missing = [name for name in required if (directory / name).is_symlink() or not (directory / name).is_file()]
    if missing:
        return f"missing in {directory}: {', '.join(missing)}", False
    try:
        record = json.loads((directory / STATE_DIR / MANIFEST).read_text(encoding="utf-8"))
        if record.get("repo_id") != repo_id:
            return None, False
        files = {name: entry for name, entry in record["files"].items() if name in required}
        damaged = [
            name
            for name, entry in files.items()
            if not is_valid(
                directory / name, RemoteFile(name, int(entry["size"]), entry.get("sha256"), entry.get("git_sha1"))
            )
        ]
    except FileNotFoundError:
        return None, False
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable download record in {directory / STATE_DIR} ({reason_of(exc)})", False
    if damaged:
        return f"damaged in {directory}: {', '.join(damaged)}", False
    return None, len(files) == len(required)
