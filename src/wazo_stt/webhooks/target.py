"""Where a webhook may go: the network guard that ``url`` downloads obey (no metadata or other blocked
addresses; ``URL_ALLOWED_HOSTS`` honoured), applied when a job is submitted and again at every delivery (DNS
may have changed in between)."""

from __future__ import annotations

import httpx

from wazo_stt.audio.fetch import FetchError, FetchPolicy, _checked_addresses, _parse_url

MAX_URL_CHARS = 2048


class CallbackRefused(ValueError):
    """The callback URL is malformed or points where the guard forbids; ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def check_callback_url(url: str, allowed_hosts: tuple[str, ...]) -> tuple[httpx.URL, list[str]]:
    """The parsed URL and the addresses it may be sent to, or :class:`CallbackRefused`.

    Seam: the audio fetcher's guard, until the network guard package (``wazo_stt.netguard``) is on main.
    """
    if len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_CHARS} characters")
    policy = FetchPolicy(max_bytes=0, timeout=0, allowed_hosts=allowed_hosts)
    try:
        parsed = _parse_url(url)
        return parsed, await _checked_addresses(parsed, policy)
    except FetchError as exc:
        raise CallbackRefused(
            exc.message.replace("audio URL", "callback URL").replace("url ", "callback_url ")
        ) from None
