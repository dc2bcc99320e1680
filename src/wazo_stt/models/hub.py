"""The Hugging Face Hub client: list a repository's files with their hashes, and fetch one file, resumable and verified.

Why not ``hf_hub_download(local_dir=...)``: current huggingface_hub releases (checked in 2.4) download into a
per-process temporary file that they delete when the download fails or is interrupted, so a 650 MB encoder cut off
at 90 % on a slow site link starts again from zero. The transfer loop here keeps the partial file (named after the
expected sha256, so a newer revision never appends to an older one) and asks for the rest with a ``Range`` request.
huggingface_hub still supplies what makes this a Hub client: the endpoint (``HF_ENDPOINT``, for mirrors), the token
(``HF_TOKEN`` or ``hf auth login``), offline mode (``HF_HUB_OFFLINE``, checked by the caller), the timeouts
(``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``), the headers and the progress bar
(``HF_HUB_DISABLE_PROGRESS_BARS``); the URLs are the Hub's own (``/api/models/...``, ``/{repo}/resolve/...``).

This module is the wire: what changes here is how the Hub is spoken to (its API, its metadata, HTTP resume and
hashing). Which files a model needs, where they land and what a run without network may accept is
:mod:`wazo_stt.models.download`'s business.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from wazo_stt import __version__

log = logging.getLogger(__name__)

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


def hub_endpoint() -> str:
    """The Hub's base URL: ``HF_ENDPOINT`` (a mirror) or https://huggingface.co, as huggingface_hub resolves it."""
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def hub_client(token: str | bool | None) -> httpx.Client:
    """An HTTP client with the Hub's headers (token, user agent) and huggingface_hub's timeouts."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(token=token, library_name="wazo-stt", library_version=__version__)
    timeout = httpx.Timeout(
        connect=float(constants.HF_HUB_ETAG_TIMEOUT),
        read=float(constants.HF_HUB_DOWNLOAD_TIMEOUT),
        write=float(constants.HF_HUB_DOWNLOAD_TIMEOUT),
        pool=float(constants.HF_HUB_ETAG_TIMEOUT),
    )
    # follow_redirects: LFS files redirect to a CDN; httpx drops the Authorization header when the host changes.
    return httpx.Client(timeout=timeout, follow_redirects=True, headers=headers)


def resolve_url(endpoint: str, repo_id: str, commit: str, name: str) -> str:
    """Where the Hub serves file `name` of `repo_id` at `commit`."""
    return f"{endpoint}/{repo_id}/resolve/{quote(commit, safe='')}/{quote(name)}"


class Unavailable(Exception):
    """The Hub answered, but 5xx or 429: down or overloaded, as good as unreachable for this run."""


def list_repository(
    client: httpx.Client, endpoint: str, repo_id: str, revision: str
) -> tuple[str, dict[str, RemoteFile]]:
    """The commit `revision` points to and the repository's files with their sizes and hashes.

    One call (``/api/models/{repo}/revision/{rev}?blobs=true``, what ``HfApi.model_info(files_metadata=True)``
    sends); every file is then downloaded at that commit, so a push during the download cannot mix revisions.
    """
    from huggingface_hub import constants

    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    response = client.get(url, params={"blobs": "true"}, timeout=constants.HF_HUB_ETAG_TIMEOUT)
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
            f"{endpoint} did not answer like a Hugging Face Hub for {repo_id} (bad model info: {reason_of(exc)});"
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
        raise Unavailable(f"HTTP {status} from {response.url.host}, the Hub or the mirror may be down")
    raise DownloadError(f"Hugging Face answered HTTP {status} for {response.url}")


def is_valid(path: Path, remote: RemoteFile) -> bool:
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


def download_file(
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
                log.warning("Download of %s interrupted (%s); resuming at byte %d", remote.name, reason_of(exc), have)
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


def reason_of(exc: BaseException) -> str:
    """The short, one-line why of an exception ("[Errno 111] Connection refused"), never a traceback."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
