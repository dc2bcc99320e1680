"""Where a webhook may go: the network guard that ``url`` downloads obey (no metadata or other blocked
addresses; ``URL_ALLOWED_HOSTS`` honoured), applied when a job is submitted and again at every delivery (DNS
may have changed in between)."""

from __future__ import annotations

import httpx

from wazo_stt.netguard import GuardError, NetworkGuard

MAX_URL_CHARS = 2048
SUBJECT = "callback URL"


class CallbackRefused(ValueError):
    """The callback URL is malformed or points where the guard forbids; ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_callback_url(url: str) -> httpx.URL:
    if len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise CallbackRefused("callback_url is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CallbackRefused("callback_url must be an http(s) URL with a host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise CallbackRefused("callback_url is not a valid URL")
    return parsed


async def check_callback_url(url: str, allowed_hosts: tuple[str, ...]) -> tuple[httpx.URL, list[str]]:
    """The parsed URL and the addresses it may be sent to, or :class:`CallbackRefused`."""
    parsed = parse_callback_url(url)
    try:
        return parsed, await NetworkGuard(allowed_hosts).check(parsed, subject=SUBJECT)
    except GuardError as exc:
        raise CallbackRefused(exc.message) from None
