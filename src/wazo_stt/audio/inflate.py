"""A download's body, decompressed in bounded steps that give the event loop back between them.

httpx decompresses each network read whole: a 64 KB read of a gzip bomb comes out as 64 MB in one call, on
the event loop (a 1 MB body inflating to 1 GB stalled every other request for 0.84 s, although the size cap
held). Here zlib never yields more than one step at a time, so the caller's size cap stops the download
within a step of the limit, and the loop runs other work between steps.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import httpx

# zlib's wbits for "a zlib or a gzip header, detected": HTTP's "deflate" is zlib-wrapped, "gzip" is gzip.
_AUTO_HEADER = 32 + zlib.MAX_WBITS
_COMPRESSED = frozenset({"gzip", "x-gzip", "deflate"})


class InflateError(ValueError):
    """The body's encoding is unknown or its compressed data is damaged; the message is fit for the caller."""


async def inflated(response: httpx.Response, step: int) -> AsyncIterator[bytes]:
    """The response body as sent (no Content-Encoding) or decompressed, at most `step` bytes per piece."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        async for raw in response.aiter_raw(step):
            yield raw
        return
    if encoding not in _COMPRESSED:
        raise InflateError(f"The audio URL sent an unsupported Content-Encoding ({encoding[:40]})")
    decoder = zlib.decompressobj(_AUTO_HEADER)
    try:
        async for raw in response.aiter_raw(step):
            data = raw
            while True:
                out = decoder.decompress(data, step)
                data = decoder.unconsumed_tail
                if out:
                    yield out
                    await asyncio.sleep(0)  # one step at a time: other requests run in between
                if not data and len(out) < step:
                    break
        tail = decoder.flush()
    except zlib.error:
        raise InflateError(f"The audio URL sent damaged {encoding} data") from None
    if tail:
        yield tail
