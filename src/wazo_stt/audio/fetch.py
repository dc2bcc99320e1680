"""Download the audio of a request that passed ``url=`` instead of uploading a file.

The URL typically points at a Wazo PBX voicemail and carries the user's API token in ``?token=…``, and it is
chosen by the client, so this module is written defensively:

* **No token leaks.** Error messages and our logs only ever show redacted URLs
  (:func:`wazo_stt.netguard.redact_url`), and httpx exceptions (whose text embeds the full URL) are never echoed.
* **SSRF guard.** Every hop (the first URL and each redirect) goes through :class:`wazo_stt.netguard.NetworkGuard`
  (blocked address ranges on the resolved addresses, optional host allow-list) and the connection goes to the very
  address that was checked (:func:`wazo_stt.netguard.pin`).
* **No port scanner.** Whether the host refused the connection, timed out, failed TLS, answered an HTTP error or
  served no audio, the client gets one and the same error; the reason goes to the log (redacted). Operators who
  want it in the answer too set ``URL_DETAILED_ERRORS=true``.
* **Bounded.** One deadline covers the whole download (DNS, connect, every redirect, body), redirects are
  followed manually up to a limit, and the body is capped at ``max_bytes`` whether or not the server announces a
  Content-Length (endless bodies are cut off as soon as they pass the cap).

We never judge the payload by its Content-Type (PBXs send ``application/octet-stream`` or plainly wrong types);
the caller decodes the bytes, which is the real test of "is this audio". Only an obvious HTML page (a login or
error page served with 200) is refused here, because decoding it would give a confusing error.

Known limits:

* No HTTP proxy support (``trust_env=False``): environment proxies and ``.netrc`` credentials are ignored, the
  latter so that no local credential is ever sent to a client-chosen host.
* With ``ca_bundle`` set only that bundle is trusted (not the public CAs as well).
* The allow-list matches the host name as written in the URL (no port); an IP-literal URL must be allowed by an
  IP pattern.
* A too-large body is still its own answer (413): the size limit is the client's to know.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from wazo_stt.audio.inflate import InflateError, inflated
from wazo_stt.netguard import GuardError, HostRefused, NetworkGuard, pin, redact_text, redact_url

if TYPE_CHECKING:
    from wazo_stt.config import Settings

# redact_url is re-exported for the routes, which name the URL they stored.
__all__ = ["UNREACHABLE_MESSAGE", "FetchError", "FetchPolicy", "fetch_audio", "redact_url"]

logger = logging.getLogger(__name__)

# What the client hears, whatever went wrong between us and the host (unless URL_DETAILED_ERRORS is on).
UNREACHABLE_MESSAGE = (
    "Could not download the audio URL: the host is unreachable or did not return audio (the server log has the reason)"
)
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK_SIZE = 64 * 1024
_USER_AGENT = "wazo-stt"


@dataclass(frozen=True)
class FetchPolicy:
    """What a URL download may do; built once from :class:`~wazo_stt.config.Settings`."""

    max_bytes: int
    timeout: float  # whole-download deadline, seconds (connect + headers + body, all redirect hops)
    verify_tls: bool = True
    ca_bundle: Path | None = None
    allowed_hosts: tuple[str, ...] = ()  # fnmatch patterns, lower-case; empty = any host (minus blocked ranges)
    max_redirects: int = 5
    detailed_errors: bool = False  # tell the client why an unreachable host failed (refused, timeout, TLS...)

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            max_bytes=settings.max_upload_bytes,
            timeout=settings.url_fetch_timeout_secs,
            verify_tls=settings.url_verify_tls,
            ca_bundle=settings.url_ca_bundle,
            allowed_hosts=tuple(settings.url_allowed_host_list),
            detailed_errors=settings.url_detailed_errors,
        )


class FetchError(Exception):
    """The URL could not be used as an audio source.

    ``status_code`` is what *our* server should answer (400, or 413 when the body is over the size limit) and
    ``message`` is safe to show to the client: it never contains the URL's query string (the token).
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message

    def __repr__(self) -> str:
        return f"FetchError({self.status_code}, {self.message!r})"

    @property
    def reason(self) -> str:
        """A short label for metrics: ``too_large``, ``unreachable`` (the host's side failed) or ``refused``."""
        if self.status_code == 413:
            return "too_large"
        return "unreachable" if isinstance(self, _Unreachable) else "refused"


class _Unreachable(FetchError):
    """A failure on the host's side of the connection; its detail is logged, and shown only when asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


# --------------------------------------------------------------------------------------------- download


def _format_mb(n_bytes: int) -> str:
    mb = n_bytes / (1024 * 1024)
    text = f"{mb:.2f}".rstrip("0").rstrip(".")
    return text if text != "0" else f"{mb:.2g}"


def _too_large(policy: FetchPolicy) -> FetchError:
    return FetchError(413, f"The audio at the URL is larger than the {_format_mb(policy.max_bytes)} MB limit")


def _timed_out(policy: FetchPolicy) -> str:
    return f"Timed out after {policy.timeout:g} s downloading the audio URL"


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchError(400, "url is not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchError(400, "url must be an http(s) URL")
    if not parsed.host:
        raise FetchError(400, "url must include a host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise FetchError(400, "url is not a valid URL")
    return parsed


def _ssl_verify(policy: FetchPolicy) -> ssl.SSLContext | bool:
    """``verify=`` for httpx: on by default, off on request, or only the configured CA bundle.

    A missing or invalid ``ca_bundle`` raises (``OSError`` / ``ssl.SSLError``): that is a server
    misconfiguration, not the client's fault, so it must not turn into a 400.
    """
    if not policy.verify_tls:
        return False
    if policy.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(policy.ca_bundle))
    return True


def _find_cause(exc: BaseException, kind: type[BaseException], *, with_errno: bool = False) -> BaseException | None:
    """The first exception of ``kind`` in ``exc``'s cause/context chain (httpx wraps httpcore wraps OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind) and (not with_errno or getattr(current, "errno", None)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _describe_network_error(exc: httpx.TransportError) -> str:
    """A short, token-free description of a transport failure (never ``str(exc)``, which embeds the URL)."""
    tls = _find_cause(exc, ssl.SSLError)
    if tls is not None:
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or type(tls).__name__
        return (
            f"TLS error talking to the audio URL's host ({detail}); if the PBX uses a self-signed or private "
            "certificate, set URL_CA_BUNDLE to its CA certificate (or URL_VERIFY_TLS=false)"
        )
    if isinstance(exc, httpx.ConnectError):
        os_error = _find_cause(exc, OSError, with_errno=True)
        if isinstance(os_error, OSError) and os_error.errno:
            reason = os.strerror(os_error.errno).lower()
            if os_error.errno == errno.ECONNREFUSED:
                reason = "connection refused"
        else:
            reason = "connection failed"
        return f"Could not connect to the audio URL's host ({reason})"
    if isinstance(exc, httpx.RemoteProtocolError):
        # httpx parses Location itself, even with follow_redirects=False (only its own prefix is looked at).
        if str(exc).startswith("Invalid URL in location header"):
            return "The audio URL redirected to an invalid URL"
        return "The audio URL's server sent an invalid or incomplete HTTP response"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "The connection to the audio URL's host was lost during the download"
    return f"Could not download the audio URL ({type(exc).__name__})"


def _status_message(status: int) -> str:
    # The standard phrase, not the server's own reason text: that one is not ours to vet.
    phrase = httpx.codes.get_reason_phrase(status)
    text = f"The audio URL answered HTTP {status}{' ' + phrase if phrase else ''}"
    if status in (401, 403):
        text += "; the token in the URL may be wrong or expired"
    return text


def _looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


async def _read_body(response: httpx.Response, policy: FetchPolicy) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(policy)
    body = bytearray()
    try:
        # Not aiter_bytes: httpx inflates each read whole, on the loop (audio/inflate.py).
        async for chunk in inflated(response, _CHUNK_SIZE):
            body += chunk
            if len(body) > policy.max_bytes:
                raise _too_large(policy)
    except InflateError as exc:
        raise FetchError(400, str(exc)) from None
    return bytes(body)


async def _fetch_hop(
    client: httpx.AsyncClient, url: httpx.URL, addresses: list[str], policy: FetchPolicy
) -> httpx.URL | bytes:
    """GET ``url`` over one of its already-checked ``addresses``; return the redirect target or the body.

    Addresses are tried in resolver order, moving on only when a TCP connection cannot be opened (e.g. a
    ``localhost`` that resolves to ``::1`` first while the server only listens on IPv4).
    """
    for index, address in enumerate(addresses):
        target = pin(url, address)
        try:
            request = client.stream("GET", target.url, headers=target.headers, extensions=target.extensions)
            async with request as response:
                status = response.status_code
                if status in _REDIRECT_CODES and "location" in response.headers:
                    try:
                        return url.join(response.headers["location"])
                    except (httpx.InvalidURL, ValueError):
                        raise _Unreachable("The audio URL redirected to an invalid URL") from None
                if not 200 <= status < 300:
                    raise _Unreachable(_status_message(status))
                return await _read_body(response, policy)
        except httpx.ConnectError as exc:
            last = index == len(addresses) - 1
            if last or _find_cause(exc, ssl.SSLError) is not None:
                raise
            logger.debug("Could not connect to %s for audio URL %s; trying the next address", address, url.host)
    raise AssertionError("unreachable: addresses is never empty")


async def _download(url: httpx.URL, policy: FetchPolicy) -> bytes:
    guard = NetworkGuard(policy.allowed_hosts)
    timeout = httpx.Timeout(policy.timeout)
    async with httpx.AsyncClient(
        verify=_ssl_verify(policy),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": _USER_AGENT, "Accept": "audio/*, */*;q=0.8", "Accept-Encoding": "identity"},
    ) as client:
        redirects = 0
        while True:
            try:
                addresses = await guard.check(url, subject="audio URL")
            except HostRefused as exc:
                raise FetchError(400, exc.message) from None
            except GuardError as exc:
                raise _Unreachable(exc.message) from None
            result = await _fetch_hop(client, url, addresses, policy)
            if isinstance(result, bytes):
                if not result:
                    raise _Unreachable("The audio URL returned no data")
                if _looks_like_html(result):
                    raise _Unreachable("The audio URL returned an HTML page, not audio")
                return result
            if result.scheme not in ("http", "https") or not result.host:
                raise _Unreachable("The audio URL redirected to a non-http(s) URL")
            if result.port is not None and not 0 < result.port < 65536:
                raise _Unreachable("The audio URL redirected to an invalid URL")
            redirects += 1
            if redirects > policy.max_redirects:
                raise _Unreachable(f"The audio URL made too many redirects (more than {policy.max_redirects})")
            logger.debug("Audio URL redirected to %s", redact_url(str(result)))
            url = result


async def fetch_audio(url: str, policy: FetchPolicy) -> bytes:
    """Download the audio at ``url`` under ``policy`` and return its raw bytes (not yet decoded).

    Raises :class:`FetchError` for anything the client can fix (bad URL, refused host, unreachable host, too
    large). The message never contains the URL's secrets; for an unreachable host it is :data:`UNREACHABLE_MESSAGE`
    unless ``policy.detailed_errors``.
    """
    parsed = _parse_url(url)
    safe_url = redact_url(url)
    logger.debug("Downloading audio from %s", safe_url)
    try:
        async with asyncio.timeout(policy.timeout):
            body = await _download(parsed, policy)
    except _Unreachable as exc:
        raise _answer(policy, safe_url, exc.message) from None
    except FetchError as exc:
        logger.info("Audio URL %s refused: %s", safe_url, exc.message)
        raise
    except (TimeoutError, httpx.TimeoutException):
        raise _answer(policy, safe_url, _timed_out(policy)) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise FetchError(400, "url is not a valid URL") from None
    except httpx.TransportError as exc:
        raise _answer(policy, safe_url, _describe_network_error(exc), redact_text(repr(exc))) from None
    except httpx.HTTPError as exc:
        raise _answer(policy, safe_url, f"Could not download the audio URL ({type(exc).__name__})") from None
    logger.debug("Downloaded %d bytes of audio from %s", len(body), safe_url)
    return body


def _answer(policy: FetchPolicy, safe_url: str, detail: str, cause: str = "") -> FetchError:
    """Log why the host could not give us the audio, and build what the client is told."""
    logger.info("Audio URL %s failed: %s%s", safe_url, detail, f" ({cause})" if cause else "")
    return _Unreachable(detail if policy.detailed_errors else UNREACHABLE_MESSAGE)
