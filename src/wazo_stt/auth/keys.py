"""API keys and the tenant each one belongs to.

Keys come from ``API_KEYS`` (``key1:tenant1,key2:tenant2[:admin]``) and/or ``API_KEYS_FILE`` (one ``KEY TENANT``
per line, an optional third word ``admin``, ``#`` comments). With neither set, keys are off: a local single-user
install, where every caller is the admin of the default tenant ``''``. Setting either turns them on, even when
the file holds no valid line (fail closed: nobody gets in rather than everybody).

Only SHA-256 digests of the keys are kept in memory, and a presented key is compared with *every* known digest
by :func:`hmac.compare_digest` (no early exit), so neither the comparison time nor the memory tells a key. Keys
never reach the database or a log: a :attr:`Principal.key_id` (the digest's first hex digits) names a key where
one must be named.

The file is re-read when it changes (its mtime, size or inode), checked at most once per request, so a key is
rotated by editing or replacing the file, without a restart. A file that cannot be read keeps the last good set
of keys (logged); one that cannot be read at start-up is an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCAL_PRINCIPAL", "ApiKeyError", "KeyRing", "Principal", "key_id"]

log = logging.getLogger(__name__)

_KEY_ID_LENGTH = 12


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant whose jobs it may see (``admin``: every tenant's), and which key it used."""

    tenant: str
    admin: bool
    key_id: str


# Keys off: one user, who owns everything.
LOCAL_PRINCIPAL = Principal(tenant="", admin=True, key_id="")


class ApiKeyError(ValueError):
    """The key configuration is unusable (bad ``API_KEYS`` syntax, unreadable ``API_KEYS_FILE`` at start-up)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id(key: str) -> str:
    """A short, non-secret name for a key (the start of its SHA-256), safe for logs and the database."""
    return _digest(key).hex()[:_KEY_ID_LENGTH]


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


def _entry(key: str, tenant: str, flag: str, where: str) -> _Entry:
    if not key or not tenant or flag not in ("", "admin"):
        raise ApiKeyError(f"{where}: expected KEY TENANT [admin]")
    return _Entry(_digest(key), Principal(tenant=tenant, admin=flag == "admin", key_id=key_id(key)))


def parse_inline(value: str) -> list[_Entry]:
    """``API_KEYS``: comma-separated ``key:tenant`` or ``key:tenant:admin``."""
    entries = []
    for number, item in enumerate((i.strip() for i in value.split(",")), start=1):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ApiKeyError(f"API_KEYS item {number}: expected key:tenant or key:tenant:admin")
        entries.append(_entry(parts[0], parts[1], parts[2] if len(parts) == 3 else "", f"API_KEYS item {number}"))
    return entries


def parse_file(text: str, name: str) -> list[_Entry]:
    """``API_KEYS_FILE``'s lines: ``KEY TENANT [admin]``; a bad line is skipped and logged (by number only)."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            if len(words) not in (2, 3):
                raise ApiKeyError(f"{name} line {number}: expected KEY TENANT [admin]")
            entries.append(_entry(words[0], words[1], words[2] if len(words) == 3 else "", f"{name} line {number}"))
        except ApiKeyError as exc:
            log.error("Ignoring a key: %s", exc)
    return entries


class KeyRing:
    """The configured keys; :meth:`authenticate` maps a presented key to its :class:`Principal`."""

    def __init__(self, inline: str = "", file: Path | None = None) -> None:
        self._inline = parse_inline(inline)
        self._file = file
        self._file_entries: list[_Entry] = []
        self._file_stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        if file is not None and not self._reload(startup=True):
            raise ApiKeyError(f"API_KEYS_FILE {file} cannot be read")

    @property
    def enabled(self) -> bool:
        return bool(self._inline) or self._file is not None

    def _reload(self, *, startup: bool = False) -> bool:
        """Re-read the file if it changed; False when it cannot be read (the previous keys stay)."""
        assert self._file is not None
        try:
            stat = os.stat(self._file)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp == self._file_stamp:
                return True
            text = self._file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            if not startup:
                log.error("Could not re-read API_KEYS_FILE %s (%s); keeping the previous keys", self._file, exc)
            return False
        entries = parse_file(text, "API_KEYS_FILE")
        with self._lock:
            self._file_entries, self._file_stamp = entries, stamp
        if not startup:
            log.info("API_KEYS_FILE changed: %d key(s) loaded", len(entries))
        return True

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal of ``presented``, or ``None`` for a missing or unknown key (keys on).

        With keys off every caller is :data:`LOCAL_PRINCIPAL`.
        """
        if not self.enabled:
            return LOCAL_PRINCIPAL
        if self._file is not None:
            self._reload()
        if not presented:
            return None
        digest = _digest(presented)
        found: Principal | None = None
        with self._lock:
            entries = [*self._inline, *self._file_entries]
        for entry in entries:  # every entry compared, whatever matched: constant time over the set
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        return found
