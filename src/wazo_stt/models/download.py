"""Fetch the istupakov ONNX export of Parakeet from Hugging Face into a flat directory, verified and resumable.

Why not ``hf_hub_download(local_dir=...)``: current huggingface_hub releases (checked in 2.4) download into a
per-process temporary file that they delete when the download fails or is interrupted, so a 650 MB encoder cut off
at 90 % on a slow site link starts again from zero. The transfer loop here keeps the partial file (named after the
expected sha256, so a newer revision never appends to an older one) and asks for the rest with a ``Range`` request.
huggingface_hub still supplies what makes this a Hub client: the endpoint (``HF_ENDPOINT``, for mirrors), the token
(``HF_TOKEN`` or ``hf auth login``), offline mode (``HF_HUB_OFFLINE``), the timeouts (``HF_HUB_ETAG_TIMEOUT``,
``HF_HUB_DOWNLOAD_TIMEOUT``), the headers and the progress bar (``HF_HUB_DISABLE_PROGRESS_BARS``); the URLs are the
Hub's own (``/api/models/...``, ``/{repo}/resolve/...``).

Files land as plain files directly in the target directory: no cache, no symlinks (ONNX Runtime refuses an
external-data model reached through a symlink, and a Docker volume should hold the bytes, not links to a cache
outside it). Every file is checked against the Hub's metadata: size, and sha256 for LFS files or the git blob
sha1 for small ones. Partial files and the record of what was verified live in ``<dir>/.cache/wazo-stt/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from wazo_stt import __version__
from wazo_stt.models.catalog import PARAKEET_MODELS, model_files

log = logging.getLogger(__name__)

# Part of the export but not required by onnx-asr 0.12 (it carries its own mel front end); fetched when the
# repository has it so the directory is the complete export, usable by other onnx-asr versions and tools.
OPTIONAL_FILES = ("nemo128.onnx",)

STATE_DIR = Path(".cache") / "wazo-stt"
MANIFEST = "manifest.json"
_CHUNK = 1024 * 1024
_TRANSFER_ATTEMPTS = 5  # consecutive failures without progress before giving up on a file


class DownloadError(Exception):
    """A download that cannot complete; the message is one line fit for the operator, with what to do next."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of the repository, as the Hub describes it: enough to verify a local copy without trusting it."""

    name: str
    size: int
    sha256: str | None = None  # LFS files (the ONNX models)
    git_sha1: str | None = None  # small files kept in git (vocab.txt, config.json): the git blob id

    def hasher(self) -> _Hasher:
        """A fresh hash of this file's kind; the git blob id hashes a ``blob <size>\\0`` header first."""
        if self.sha256:
            return hashlib.sha256()
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(b"blob %d\0" % self.size)
        return digest

    @property
    def expected_digest(self) -> str | None:
        return self.sha256 or self.git_sha1

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256, "git_sha1": self.git_sha1}


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


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


def hub_endpoint() -> str:
    """The Hub's base URL: ``HF_ENDPOINT`` (a mirror) or https://huggingface.co, as huggingface_hub resolves it."""
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


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
        raise DownloadError(f"cannot create {directory}: {_reason(exc)}") from None
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
    from huggingface_hub.utils import build_hf_headers

    repo_id = PARAKEET_MODELS[model_id].repo_id
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    required, optional = wanted_files(quantization)
    result = DownloadResult(model_id=model_id, repo_id=repo_id, directory=directory, commit=None)

    headers = build_hf_headers(token=token, library_name="wazo-stt", library_version=__version__)
    timeout = httpx.Timeout(
        connect=float(constants.HF_HUB_ETAG_TIMEOUT),
        read=float(constants.HF_HUB_DOWNLOAD_TIMEOUT),
        write=float(constants.HF_HUB_DOWNLOAD_TIMEOUT),
        pool=float(constants.HF_HUB_ETAG_TIMEOUT),
    )
    unreachable = (
        f"cannot reach Hugging Face ({endpoint}) to download {model_id}: {{reason}}. "
        f"Copy the files into {directory} by hand or retry with internet."
    )

    # follow_redirects: LFS files redirect to a CDN; httpx drops the Authorization header when the host changes.
    with httpx.Client(timeout=timeout, follow_redirects=True, headers=headers) as client:
        try:
            if constants.is_offline_mode():
                raise _Offline("HF_HUB_OFFLINE is set")
            commit, remote = _list_repository(client, endpoint, repo_id, revision, constants.HF_HUB_ETAG_TIMEOUT)
        except (_Offline, _Unavailable, httpx.TransportError) as exc:
            reason = _reason(exc)
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
            if _is_valid(target, remote_file):
                result.present.append(remote_file.name)
                continue
            url = f"{endpoint}/{repo_id}/resolve/{quote(commit, safe='')}/{quote(remote_file.name)}"
            try:
                _download(client, url, remote_file, target, state, progress=progress, say=say)
            except httpx.TransportError as exc:
                raise DownloadError(
                    unreachable.format(reason=f"{remote_file.name}: {_reason(exc)}")
                    + " Run the command again to resume."
                ) from None
            except OSError as exc:
                raise DownloadError(f"cannot write {remote_file.name} in {directory}: {_reason(exc)}") from None
            result.downloaded.append(remote_file.name)

    _write_manifest(state / MANIFEST, repo_id, commit, quantization, files)
    links = [p.name for p in directory.iterdir() if p.is_symlink() and p.name in {f.name for f in files}]
    if links:  # _download replaces files, so this only trips on a link made after the check above
        raise DownloadError(f"{', '.join(links)} in {directory} are symlinks; ONNX Runtime needs real files")
    return result


class _Offline(Exception):
    """HF_HUB_OFFLINE is set: no request at all."""


class _Unavailable(Exception):
    """The Hub answered, but 5xx or 429: down or overloaded, as good as unreachable for this run."""


def _list_repository(
    client: httpx.Client, endpoint: str, repo_id: str, revision: str, timeout: float
) -> tuple[str, dict[str, RemoteFile]]:
    """The commit `revision` points to and the repository's files with their sizes and hashes.

    One call (``/api/models/{repo}/revision/{rev}?blobs=true``, what ``HfApi.model_info(files_metadata=True)``
    sends); every file is then downloaded at that commit, so a push during the download cannot mix revisions.
    """
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    response = client.get(url, params={"blobs": "true"}, timeout=timeout)
    _raise_for_status(response, repo_id, revision)
    try:
        info = response.json()
        commit = info["sha"]
        remote: dict[str, RemoteFile] = {}
        for sibling in info["siblings"]:
            lfs = sibling.get("lfs")
            name = sibling["rfilename"]
            if lfs:
                remote[name] = RemoteFile(name, int(lfs["size"]), sha256=lfs["sha256"])
            else:
                remote[name] = RemoteFile(name, int(sibling["size"]), git_sha1=sibling.get("blobId"))
    except (ValueError, KeyError, TypeError) as exc:
        raise DownloadError(
            f"{endpoint} did not answer like a Hugging Face Hub for {repo_id} (bad model info: {_reason(exc)});"
            " check HF_ENDPOINT"
        ) from None
    return commit, remote


def _raise_for_status(response: httpx.Response, repo_id: str, revision: str) -> None:
    if response.is_success:
        return
    status = response.status_code
    if status in (401, 403):
        # The Hub answers 401 for a repository that does not exist as for one that needs a token.
        hint = "it does not exist, or set HF_TOKEN to a token that can read it"
        raise DownloadError(f"Hugging Face refused access to {repo_id} (HTTP {status}): {hint}")
    if status == 404:
        raise DownloadError(f"{repo_id} (revision {revision!r}) was not found on {response.url.host} (HTTP 404)")
    if status >= 500 or status == 429:
        raise _Unavailable(f"HTTP {status} from {response.url.host}, the Hub or the mirror may be down")
    raise DownloadError(f"Hugging Face answered HTTP {status} for {response.url}")


def _is_valid(path: Path, remote: RemoteFile) -> bool:
    """True when `path` is a real file with the Hub's size and hash (a symlink never is: it gets replaced)."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size != remote.size:
        return False
    if remote.expected_digest is None:  # a Hub that gives no hash for a small file: the size is all we can check
        return True
    return _hash_file(path, remote) == remote.expected_digest


def _hash_file(path: Path, remote: RemoteFile) -> str:
    digest = remote.hasher()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download(
    client: httpx.Client,
    url: str,
    remote: RemoteFile,
    target: Path,
    state: Path,
    *,
    progress: bool,
    say: Callable[[str], None],
) -> None:
    """Download `remote` to `target` through a partial file in `state`, resuming what an earlier run left."""
    from huggingface_hub.utils import tqdm

    partial = state / f"{remote.name}.{(remote.expected_digest or 'nohash')[:16]}.incomplete"
    for stale in state.glob(f"{remote.name}.*.incomplete"):  # left by an older revision: never to be resumed
        if stale != partial:
            stale.unlink(missing_ok=True)
    digest = remote.hasher()
    have = partial.stat().st_size if partial.is_file() else 0
    if have > remote.size:
        partial.unlink()
        have = 0
    if have:
        with partial.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
        say(f"resuming {remote.name} at {_mb(have)} of {_mb(remote.size)}")
    else:
        say(f"downloading {remote.name} ({_mb(remote.size)})")

    failures = 0
    with (
        tqdm(
            total=remote.size,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=remote.name,
            disable=None if progress else True,  # None: hidden when stderr is not a terminal (logs stay clean)
        ) as bar,
        partial.open("ab") as out,
    ):
        while have < remote.size:
            # identity: a gzip-encoded body would make sizes and byte ranges refer to different bytes.
            headers = {"Accept-Encoding": "identity"} | ({"Range": f"bytes={have}-"} if have else {})
            before = have
            try:
                with client.stream("GET", url, headers=headers) as response:
                    if response.status_code == 416 or (have and response.status_code == 200):
                        # The server cannot or will not resume: start over from an empty file.
                        out.truncate(0)
                        out.seek(0)
                        digest, have = remote.hasher(), 0
                        bar.reset(total=remote.size)
                    if not response.is_success:
                        if response.status_code == 416 and failures == 0:
                            failures += 1
                            continue
                        raise DownloadError(
                            f"Hugging Face answered HTTP {response.status_code} for {url}"
                            + (": set HF_TOKEN to a token that can read it" if response.status_code == 401 else "")
                        )
                    # Chunks as they arrive, flushed at once: what was received is on disk if the process dies.
                    for chunk in response.iter_bytes():
                        if have + len(chunk) > remote.size:
                            partial.unlink(missing_ok=True)  # whatever this is, it is not the file the Hub lists
                            raise DownloadError(
                                f"{url} sent more than the {remote.size} bytes the Hub lists for {remote.name};"
                                " a mirror set by HF_ENDPOINT may be out of date"
                            )
                        out.write(chunk)
                        out.flush()
                        digest.update(chunk)
                        have += len(chunk)
                        bar.update(len(chunk))
            except httpx.TransportError as exc:
                out.flush()
                failures = 0 if have > before else failures + 1
                if failures >= _TRANSFER_ATTEMPTS:
                    raise
                log.warning("Download of %s interrupted (%s); resuming at byte %d", remote.name, _reason(exc), have)
                time.sleep(1)
                continue
            if have == before:  # a 2xx with an empty body: do not spin
                failures += 1
                if failures >= _TRANSFER_ATTEMPTS:
                    raise DownloadError(f"{url} keeps sending no data for {remote.name}; retry later")
    got = digest.hexdigest()
    if remote.expected_digest is not None and got != remote.expected_digest:
        partial.unlink(missing_ok=True)
        kind = "sha256" if remote.sha256 else "git blob sha1"
        raise DownloadError(
            f"{remote.name} from {url} does not match the Hub's {kind} (expected {remote.expected_digest[:12]}…,"
            f" got {got[:12]}…); the bad copy was deleted, run the command again"
            " (a mirror set by HF_ENDPOINT may serve stale files)"
        )
    # A previous copy may be a symlink into a cache or a corrupt file; replace makes the new one appear whole.
    os.replace(partial, target)


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
            if not _is_valid(
                directory / name, RemoteFile(name, int(entry["size"]), entry.get("sha256"), entry.get("git_sha1"))
            )
        ]
    except FileNotFoundError:
        return None, False
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable download record in {directory / STATE_DIR} ({_reason(exc)})", False
    if damaged:
        return f"damaged in {directory}: {', '.join(damaged)}", False
    return None, len(files) == len(required)


def _reason(exc: BaseException) -> str:
    """The short, one-line why of an exception ("[Errno 111] Connection refused"), never a traceback."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
