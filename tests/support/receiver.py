"""A loopback webhook receiver: records every POST (headers, body, arrival time) and answers scripted statuses."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    answered: int


@dataclass
class Receiver:
    url: str
    # Statuses answered in turn; once used up, ``then`` is answered.
    script: list[int] = field(default_factory=list)
    then: int = 200
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.script.pop(0) if self.script else self.then

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.deliveries)} of {count} webhook deliveries arrived")
            time.sleep(0.02)
        return list(self.deliveries)


@contextlib.contextmanager
def receiving(script: list[int] | None = None, *, then: int = 200, path: str = "/hook") -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}{path}", list(script or []), then)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.next_status()
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.deliveries.append(Delivery(headers, body, time.monotonic(), status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
