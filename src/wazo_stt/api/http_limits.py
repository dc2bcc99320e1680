"""The HTTP server's own limits against hostile clients: header size, slow requests, connection count.

uvicorn's default HTTP parser (httptools) has no header-size cap (one 128 MB header blocked the event loop for
25 s) and uvicorn times out only idle keep-alive connections, never a request still arriving (1 100 half-sent
requests exhausted 1 024 file descriptors). So the server runs uvicorn's h11 implementation, which caps an
incomplete request head (``h11_max_incomplete_event_size``), with a protocol that also gives every request
head a deadline and closes a body that stops arriving; a connection cap below the descriptor limit answers
503 before the process runs out of them. A reverse proxy in front remains the answer for the open internet
(docs/reliability.md), but these hold without one.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from wazo_stt.config import Settings

log = logging.getLogger(__name__)

# Descriptors kept for the database, model files, logs and outgoing URL fetches beyond the client connections.
RESERVED_FDS = 64


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not in by the deadline, or whose body
    stops arriving for as long. Set up by :func:`uvicorn_limits` (the timeouts are class attributes because
    uvicorn builds the protocol itself)."""

    header_timeout: float = 10.0
    body_idle_timeout: float = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._rearm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timeout for the next request
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _rearm(self) -> None:
        """After each read: a head still arriving keeps its first deadline; a body gets a fresh idle one."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._deadline is None:  # the first bytes of the next request on a keep-alive connection
                self._arm(self.header_timeout)
        elif state is h11.SEND_BODY:
            self._disarm()
            self._arm(self.body_idle_timeout)
        else:  # the request is in; the app's answer may take as long as the job (SYNC_TIMEOUT_SECS)
            self._disarm()

    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return
        if self.flow.read_paused:  # the app has not taken the body so far yet: the wait is ours, not theirs
            self._arm(self.body_idle_timeout)
            return
        log.info("Closing a connection from %s: its request did not arrive in time", self.client)
        self.transport.close()


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one (1 024 by default, often 1 048 576 hard); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # a container may forbid it: keep the soft limit
            log.warning("Could not raise the file-descriptor limit from %d to %d: %s", soft, hard, exc)
    return soft


def uvicorn_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config arguments that bound what one client can hold: see the module docstring."""
    GuardedH11Protocol.header_timeout = settings.http_header_timeout_secs
    GuardedH11Protocol.body_idle_timeout = settings.http_body_idle_timeout_secs
    fds = raise_fd_limit()
    connections = settings.http_max_connections
    if fds != resource.RLIM_INFINITY and connections > fds - RESERVED_FDS:
        connections = max(1, fds - RESERVED_FDS)
        log.warning("HTTP_MAX_CONNECTIONS lowered to %d: the file-descriptor limit is %d", connections, fds)
    return {
        "http": GuardedH11Protocol,
        "h11_max_incomplete_event_size": settings.http_max_header_kb * 1024,
        "limit_concurrency": connections,
        "timeout_keep_alive": settings.http_keep_alive_secs,
    }
