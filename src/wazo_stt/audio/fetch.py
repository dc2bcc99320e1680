"""Download the audio of a request that passed ``url=`` instead of uploading a file.

The URL typically points at a Wazo PBX voicemail and carries the user's API token in ``?token=…``, and it is
chosen by the client, so this module is written defensively:

* **No token leaks.** Error messages and our logs only ever show :func:`redact_url` forms, httpx exceptions
  (whose text embeds the full URL) are never echoed, and a logging filter installed on the ``httpx`` and
  ``httpcore.*`` loggers redacts query strings from *their* records (httpx logs every request URL at INFO).
* **SSRF guard.** Every hop (the first URL and each redirect) is resolved with the event loop's non-blocking
  resolver and refused when *any* address is link-local / cloud-metadata / unspecified / multicast (IPv4-mapped,
  NAT64 and 6to4 embeddings included). Private LAN ranges and loopback stay allowed on purpose: PBXs live there.
  An optional host allow-list (fnmatch patterns) is checked on every hop too. The connection then goes to the
  very address that was checked (the URL's host is swapped for the IP, with the original ``Host`` header and TLS
  SNI / certificate name kept), so a DNS answer that changes between the check and the connection (DNS
  rebinding) cannot redirect us to a blocked address.
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
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import ipaddress
import logging
import os
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from wazo_stt.audio.inflate import InflateError, inflated

if TYPE_CHECKING:
    from wazo_stt.config import Settings

__all__ = ["FetchError", "FetchPolicy", "fetch_audio", "redact_url"]

logger = logging.getLogger(__name__)

_REDACTED = "REDACTED"
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

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            max_bytes=settings.max_upload_bytes,
            timeout=settings.url_fetch_timeout_secs,
            verify_tls=settings.url_verify_tls,
            ca_bundle=settings.url_ca_bundle,
            allowed_hosts=tuple(settings.url_allowed_host_list),
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


# --------------------------------------------------------------------------------------------- redaction


def redact_url(url: str) -> str:
    """Return ``url`` with every query value and any userinfo password replaced by ``REDACTED``.

    The fragment is dropped. Keys are kept so logs still tell *which* parameters were sent. Never raises: an
    unparsable URL is cut at its query string instead.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + _REDACTED
            netloc = f"{userinfo}@{hostport}"
        query = "&".join(_redact_query_item(item) for item in parts.query.split("&")) if parts.query else ""
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        base = url.split("#", 1)[0]
        base, sep, _ = base.partition("?")
        base = re.sub(r"//([^/@:]*):[^/@]*@", rf"//\1:{_REDACTED}@", base)
        return f"{base}?{_REDACTED}" if sep else base


def _redact_query_item(item: str) -> str:
    if not item:
        return item
    key, sep, _ = item.partition("=")
    # A bare ``?abcdef`` item may itself be a secret: redact it whole.
    return f"{key}={_REDACTED}" if sep else _REDACTED


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_QUERY_VALUE_IN_TEXT = re.compile(r"([?&;][^\s=&#'\"?]+=)[^\s&#'\"]*")
_USERINFO_IN_TEXT = re.compile(r"(//[^/\s@:'\"]*):[^/\s@'\"]*@")


def _redact_text(text: str) -> str:
    """Redact every URL-ish thing in free text (log lines, exception strings).

    Absolute URLs go through :func:`redact_url`; relative ones (e.g. a ``Location`` header logged by httpcore)
    have their ``key=value`` query pairs redacted.
    """
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _QUERY_VALUE_IN_TEXT.sub(rf"\1{_REDACTED}", text)
    return _USERINFO_IN_TEXT.sub(rf"\1:{_REDACTED}@", text)


class _RedactingFilter(logging.Filter):
    """Rewrite httpx/httpcore log records so the URL's token never reaches a log handler.

    httpx logs ``HTTP Request: GET <full url>`` at INFO and httpcore logs response headers (``Location`` may carry
    a token) at DEBUG. The record is formatted once, redacted, and its arguments dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix, but must not leak either
            message = str(record.msg)
        record.msg = _redact_text(message)
        record.args = None
        return True


_FILTERED_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def _install_log_redaction() -> None:
    """Attach the redacting filter to each httpx/httpcore logger.

    Logger filters only see records logged on *that* logger (not on its children), hence the explicit list of
    httpcore sub-loggers. Idempotent, so re-imports (tests, reloads) don't stack filters.
    """
    for name in _FILTERED_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _RedactingFilter) for f in target.filters):
            target.addFilter(_RedactingFilter())


_install_log_redaction()


# --------------------------------------------------------------------------------------------- SSRF guard

_BLOCKED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("169.254.0.0/16"), "link-local / cloud metadata"),
    (ipaddress.ip_network("100.100.100.200/32"), "cloud metadata"),
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified"),
    (ipaddress.ip_network("255.255.255.255/32"), "broadcast"),
    (ipaddress.ip_network("fe80::/10"), "link-local"),
    (ipaddress.ip_network("fd00:ec2::/32"), "cloud metadata"),
    (ipaddress.ip_network("::/128"), "unspecified"),
)
_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


def _blocked_reason(address: str) -> str | None:
    """Why we refuse to connect to ``address`` (an IP string), or ``None`` when it is fine.

    IPv6 addresses that embed an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``, 6to4) are
    checked as that IPv4 address too, since they can route to it.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            candidates.append(ip.sixtofour)
        if ip in _NAT64_PREFIX:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for candidate in candidates:
        if candidate.is_multicast:
            return "multicast"
        for network, reason in _BLOCKED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                return reason
    return None


async def _resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` to its distinct IP addresses, in resolver order, without blocking the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(host, p.lower()) for p in patterns)


async def _checked_addresses(url: httpx.URL, policy: FetchPolicy) -> list[str]:
    """Apply the allow-list and the SSRF rules to one hop; return the addresses we may connect to."""
    host = url.raw_host.decode("ascii").lower().rstrip(".")  # IDNA (punycode) form: what DNS and TLS see
    display_host = url.host.lower().rstrip(".")  # the Unicode form, also accepted by the allow-list
    if not (_host_allowed(host, policy.allowed_hosts) or _host_allowed(display_host, policy.allowed_hosts)):
        raise FetchError(400, f"The audio URL's host is not allowed ({host} is not in URL_ALLOWED_HOSTS)")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await _resolve(host, port)
        except (socket.gaierror, UnicodeError, OSError):
            logger.info("Could not resolve the host of audio URL %s", redact_url(str(url)))
            raise FetchError(400, f"Could not resolve the audio URL's host ({host})") from None
        if not addresses:
            raise FetchError(400, f"Could not resolve the audio URL's host ({host})")
    for address in addresses:
        reason = _blocked_reason(address)
        if reason is not None:
            logger.warning("Refused audio URL %s: %s resolves to %s (%s)", redact_url(str(url)), host, address, reason)
            raise FetchError(400, f"The audio URL's host is not allowed ({host} points to a blocked {reason} address)")
    return addresses


# --------------------------------------------------------------------------------------------- download


def _format_mb(n_bytes: int) -> str:
    mb = n_bytes / (1024 * 1024)
    text = f"{mb:.2f}".rstrip("0").rstrip(".")
    return text if text != "0" else f"{mb:.2g}"


def _too_large(policy: FetchPolicy) -> FetchError:
    return FetchError(413, f"The audio at the URL is larger than the {_format_mb(policy.max_bytes)} MB limit")


def _timed_out(policy: FetchPolicy) -> FetchError:
    return FetchError(400, f"Timed out after {policy.timeout:g} s downloading the audio URL")


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
    headers = {"Host": url.netloc.decode("ascii")}
    extensions: dict[str, object] = {}
    if url.scheme == "https" and not _is_ip_literal(url.host):
        # Also the name the certificate is verified against, although we connect to an IP.
        extensions["sni_hostname"] = url.raw_host.decode("ascii").rstrip(".")
    for index, address in enumerate(addresses):
        pinned = url.copy_with(host=address)
        try:
            async with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                status = response.status_code
                if status in _REDIRECT_CODES and "location" in response.headers:
                    try:
                        return url.join(response.headers["location"])
                    except (httpx.InvalidURL, ValueError):
                        raise FetchError(400, "The audio URL redirected to an invalid URL") from None
                if not 200 <= status < 300:
                    raise FetchError(400, _status_message(status))
                return await _read_body(response, policy)
        except httpx.ConnectError as exc:
            last = index == len(addresses) - 1
            if last or _find_cause(exc, ssl.SSLError) is not None:
                raise
            logger.debug("Could not connect to %s for audio URL %s; trying the next address", address, url.host)
    raise AssertionError("unreachable: addresses is never empty")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _download(url: httpx.URL, policy: FetchPolicy) -> bytes:
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
            addresses = await _checked_addresses(url, policy)
            result = await _fetch_hop(client, url, addresses, policy)
            if isinstance(result, bytes):
                if not result:
                    raise FetchError(400, "The audio URL returned no data")
                if _looks_like_html(result):
                    raise FetchError(400, "The audio URL returned an HTML page, not audio")
                return result
            if result.scheme not in ("http", "https") or not result.host:
                raise FetchError(400, "The audio URL redirected to a non-http(s) URL")
            if result.port is not None and not 0 < result.port < 65536:
                raise FetchError(400, "The audio URL redirected to an invalid URL")
            redirects += 1
            if redirects > policy.max_redirects:
                raise FetchError(400, f"The audio URL made too many redirects (more than {policy.max_redirects})")
            logger.debug("Audio URL redirected to %s", redact_url(str(result)))
            url = result


async def fetch_audio(url: str, policy: FetchPolicy) -> bytes:
    """Download the audio at ``url`` under ``policy`` and return its raw bytes (not yet decoded).

    Raises :class:`FetchError` for anything the client can fix (bad URL, refused host, HTTP error, timeout, too
    large, empty or HTML body). The message never contains the URL's query string or password.
    """
    parsed = _parse_url(url)
    safe_url = redact_url(url)
    logger.debug("Downloading audio from %s", safe_url)
    try:
        async with asyncio.timeout(policy.timeout):
            body = await _download(parsed, policy)
    except FetchError as exc:
        logger.info("Audio URL %s refused: %s", safe_url, exc.message)
        raise
    except (TimeoutError, httpx.TimeoutException):
        logger.info("Audio URL %s timed out after %g s", safe_url, policy.timeout)
        raise _timed_out(policy) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise FetchError(400, "url is not a valid URL") from None
    except httpx.TransportError as exc:
        message = _describe_network_error(exc)
        logger.info("Audio URL %s failed: %s (%s)", safe_url, message, _redact_text(repr(exc)))
        raise FetchError(400, message) from None
    except httpx.HTTPError as exc:
        logger.info("Audio URL %s failed: %s", safe_url, type(exc).__name__)
        raise FetchError(400, f"Could not download the audio URL ({type(exc).__name__})") from None
    logger.debug("Downloaded %d bytes of audio from %s", len(body), safe_url)
    return body
