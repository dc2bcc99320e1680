"""Decide whether the server may open a connection to a client-chosen URL (audio ``url=``, webhooks).

Loopback and the private LAN stay allowed on purpose: PBXs live there. What is refused is what no PBX ever is
and what an attacker wants to reach through us (SSRF): cloud metadata services, link-local, unspecified,
broadcast and multicast addresses — in every spelling that can route to them (IPv4-mapped, IPv4-compatible,
IPv4-translated, NAT64 well-known and local-use prefixes, 6to4, Teredo).

The decision is taken on the *resolved* addresses (all of them: one bad answer refuses the host), and the
caller then connects to exactly one of those checked addresses (:func:`pin`), so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot send us elsewhere. An optional host allow-list
(``URL_ALLOWED_HOSTS``, fnmatch patterns) is the recommended setting for exposed deployments.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import logging
import socket
from dataclasses import dataclass

import httpx

from wazo_stt.netguard.redaction import redact_url

__all__ = ["GuardError", "HostRefused", "HostUnresolvable", "NetworkGuard", "PinnedTarget", "blocked_reason", "pin"]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_net = ipaddress.ip_network

# Cloud metadata and host-agent addresses, as documented by each provider. 169.254.169.254 (AWS, GCP, Azure,
# Oracle, OpenStack, DigitalOcean, Hetzner, IBM...), AWS ECS 169.254.170.2 and Tencent 169.254.0.23 are all in
# the link-local block below.
_METADATA: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_net("100.100.100.200/32"), "cloud metadata (Alibaba Cloud)"),
    (_net("168.63.129.16/32"), "cloud metadata (Azure WireServer)"),
    (_net("192.0.0.192/32"), "cloud metadata (Oracle Cloud)"),
    (_net("fd00:ec2::/32"), "cloud metadata (AWS IPv6)"),
    (_net("fd20:ce::254/128"), "cloud metadata (Google Cloud IPv6)"),
)
_BLOCKED: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_net("169.254.0.0/16"), "link-local / cloud metadata"),
    *_METADATA,
    (_net("192.0.0.0/24"), "IETF protocol assignment"),
    (_net("0.0.0.0/8"), "unspecified"),
    (_net("255.255.255.255/32"), "broadcast"),
    (_net("fe80::/10"), "link-local"),
    (_net("::/128"), "unspecified"),
)

# Prefixes whose addresses carry an IPv4 address inside (RFC 6052 NAT64, RFC 6145 IPv4-translated, and the
# deprecated IPv4-compatible ::a.b.c.d). For the local-use NAT64 prefix the operator picks the prefix length,
# so every RFC 6052 layout possible inside a /48 is checked.
_NAT64_WELL_KNOWN = _net("64:ff9b::/96")
_NAT64_LOCAL_USE = _net("64:ff9b:1::/48")
_IPV4_TRANSLATED = _net("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = _net("::/96")
_THIS_NETWORK = _net("0.0.0.0/8")
# RFC 6052 section 2.2: where the 32 IPv4 bits sit for each prefix length (byte offsets; byte 8 is reserved).
_RFC6052_LAYOUTS = {
    48: (6, 7, 9, 10),
    56: (7, 9, 10, 11),
    64: (9, 10, 11, 12),
    96: (12, 13, 14, 15),
}


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address ``ip`` can stand for (empty for a plain IPv6 address)."""
    packed = ip.packed
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64_WELL_KNOWN or ip in _IPV4_TRANSLATED or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(packed[12:16]))
    if ip in _NAT64_LOCAL_USE:
        # Reading a layout the operator did not pick gives a meaningless address, often in 0.0.0.0/8 (the zero
        # bytes of another layout): those are skipped, or every local-use NAT64 address would be refused.
        for layout in _RFC6052_LAYOUTS.values():
            candidate = ipaddress.IPv4Address(bytes(packed[i] for i in layout))
            if candidate not in _THIS_NETWORK:
                found.append(candidate)
    return found


def blocked_reason(address: str) -> str | None:
    """Why the server refuses to connect to ``address`` (an IP string), or ``None`` when it may."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates.extend(_embedded_ipv4(ip))
    for candidate in candidates:
        if candidate.is_multicast:
            return "multicast"
        for network, reason in _BLOCKED:
            if candidate.version == network.version and candidate in network:
                return reason
    return None


class GuardError(Exception):
    """The guard refused a URL; ``message`` is safe to show (no URL secret in it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HostRefused(GuardError):
    """The host is outside the allow-list or resolves to a blocked address: a policy decision."""


class HostUnresolvable(GuardError):
    """DNS gave no address for the host."""


async def resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` to its distinct IP addresses, in resolver order, without blocking the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class NetworkGuard:
    """The outbound policy: an optional allow-list (lower-case fnmatch patterns) on top of the blocked ranges."""

    allowed_hosts: tuple[str, ...] = ()

    def host_allowed(self, url: httpx.URL) -> bool:
        """Match the host as DNS and TLS see it (IDNA) or as written (Unicode), without port or final dot."""
        if not self.allowed_hosts:
            return True
        names = {url.raw_host.decode("ascii").lower().rstrip("."), url.host.lower().rstrip(".")}
        return any(fnmatch.fnmatchcase(name, p.lower()) for name in names for p in self.allowed_hosts)

    async def check(self, url: httpx.URL, subject: str = "URL") -> list[str]:
        """Apply the allow-list and the blocked ranges to one hop; return the addresses it may connect to.

        Raises :class:`HostRefused` or :class:`HostUnresolvable`, whose messages name the URL as ``subject``
        ("audio URL", "webhook URL"). Every redirect hop must be checked again.
        """
        host = url.raw_host.decode("ascii").lower().rstrip(".")
        if not self.host_allowed(url):
            raise HostRefused(f"The {subject}'s host is not allowed ({host} is not in URL_ALLOWED_HOSTS)")
        port = url.port or (443 if url.scheme == "https" else 80)
        if _is_ip_literal(host):
            addresses = [str(ipaddress.ip_address(host))]
        else:
            try:
                addresses = await resolve(host, port)
            except (socket.gaierror, UnicodeError, OSError) as exc:
                logger.info("Could not resolve the host of %s %s: %s", subject, redact_url(str(url)), exc)
                raise HostUnresolvable(f"Could not resolve the {subject}'s host ({host})") from None
            if not addresses:
                raise HostUnresolvable(f"Could not resolve the {subject}'s host ({host})")
        for address in addresses:
            reason = blocked_reason(address)
            if reason is not None:
                safe_url = redact_url(str(url))
                logger.warning("Refused %s %s: %s resolves to %s (%s)", subject, safe_url, host, address, reason)
                raise HostRefused(f"The {subject}'s host is not allowed ({host} points to a blocked {reason} address)")
        return addresses


@dataclass(frozen=True)
class PinnedTarget:
    """How to send a request for ``url`` to one checked address while the server still sees the original host."""

    url: httpx.URL  # the URL with its host swapped for the checked IP
    headers: dict[str, str]  # the original Host header
    extensions: dict[str, object]  # httpx's ``sni_hostname``: the TLS name, also the one the certificate must match


def pin(url: httpx.URL, address: str) -> PinnedTarget:
    """The request parts that connect to ``address`` (checked by :meth:`NetworkGuard.check`) for ``url``."""
    extensions: dict[str, object] = {}
    if url.scheme == "https" and not _is_ip_literal(url.host):
        extensions["sni_hostname"] = url.raw_host.decode("ascii").rstrip(".")
    return PinnedTarget(url.copy_with(host=address), {"Host": url.netloc.decode("ascii")}, extensions)
