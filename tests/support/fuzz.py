"""Hostile input for the fuzz tests: damaged audio of every format, and multipart requests broken every way.

Seeds are valid 1-second files of each format the server takes (made at test time, as in the decoder tests);
the strategies then truncate them, flip and splice bytes, or replace them with noise. Requests are built as raw
bytes, so that everything a client controls can be wrong: the framing, the boundary, the part headers, the
field names and values (unicode, control characters, NaN, sizes past the limits), the content types.
"""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from tests.support.audio_fixtures import encoded, tone_with_click, wav_bytes

FIELDS = (
    "file",
    "url",
    "model",
    "language",
    "prompt",
    "temperature",
    "response_format",
    "timestamp_granularities[]",
    "timestamp_granularities",
    "user_uuid",
    "message_id",
    "force",
)
ABSURD_VALUES = (
    "",
    " ",
    "NaN",
    "nan",
    "-nan",
    "inf",
    "-Infinity",
    "1e309",
    "-0",
    "0x10",
    "1_0",
    "\u0661",  # an Arabic-Indic digit one: float() takes it
    "true",
    "TRUE",
    "1",
    "yes",
    "null",
    "whisper-1",
    "parakeet-tdt-0.6b-v3",
    "verbose_json",
    "srt",
    "segment,word",
    "word,word,segment",
    "en",
    "EN",
    "zz",
    "x" * 257,  # one past IDENTITY_MAX_CHARS
    "x" * 70_000,  # past the 64 KB limit of a form field
    "\x00",
    "a\x00b",
    "\r\n",
    "\u202e\u200b\ufeff",  # right-to-left override, zero-width space, BOM
    "\U0001f4de📞",
    "\ud7ff\ue000\uffff",
    "../../etc/passwd",
    "'; DROP TABLE jobs; --",
    "%00%ff",
)
URLS = (
    "http://127.0.0.1:9/vm.wav?token=SECRET",  # nothing listens there: connection refused
    "https://127.0.0.1:9/vm.wav",
    "ftp://127.0.0.1/vm.wav",
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata: refused by the SSRF guard
    "http://[::1",
    "http://",
    "not a url",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:99999/",
    "javascript:alert(1)",
)
CONTENT_TYPES = (
    "multipart/form-data; boundary={b}",
    'multipart/form-data; boundary="{b}"',
    "multipart/form-data; boundary={b}; charset=utf-16",
    "multipart/form-data; boundary={b}; charset=no-such-charset",
    "multipart/form-data",  # no boundary
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=other",
    "multipart/mixed; boundary={b}",
    "application/x-www-form-urlencoded",
    "application/json",
    "text/plain",
    "audio/wav",
    "",
    "multipart/form-data; boundary={b}; boundary=again",
)


def _gsm_wav() -> bytes | None:
    """GSM 06.10 in WAV (Asterisk's wav49), when sox is there to write it."""
    if shutil.which("sox") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.wav", Path(tmp) / "gsm.wav"
        source.write_bytes(wav_bytes(tone_with_click(8000, duration=1.0), 8000))
        subprocess.run(["sox", source, "-e", "gsm-full-rate", target], check=True, capture_output=True)
        return target.read_bytes()


@functools.cache
def seeds() -> dict[str, bytes]:
    """One valid second of audio per format and codec the server takes."""
    t8, t16, t48 = (tone_with_click(rate, duration=1.0) for rate in (8000, 16000, 48000))
    files = {
        "wav-pcm16": wav_bytes(t8, 8000),
        "wav-float": encoded(t16, 16000, "pcm_f32le", "wav"),
        "wav-mulaw": encoded(t8, 8000, "pcm_mulaw", "wav"),
        "wav-alaw": encoded(t8, 8000, "pcm_alaw", "wav"),
        "mp3": encoded(t16, 16000, "libmp3lame", "mp3"),
        "flac": encoded(t16, 16000, "flac", "flac"),
        "ogg-opus": encoded(t48, 48000, "libopus", "ogg"),
        "webm-opus": encoded(t48, 48000, "libopus", "webm"),
        "m4a-aac": encoded(t16, 16000, "aac", "ipod"),
        # FFmpeg's own Vorbis encoder is experimental and stereo-only.
        "ogg-vorbis": encoded(
            tone_with_click(44100, duration=1.0),
            44100,
            "vorbis",
            "ogg",
            layout="stereo",
            options={"strict": "experimental"},
        ),
    }
    gsm = _gsm_wav()
    if gsm is not None:
        files["wav-gsm"] = gsm
    return files


@st.composite
def damaged_audio(draw: st.DrawFn) -> bytes:
    """A seed truncated, with bytes flipped or spliced in, duplicated in part; or plain noise."""
    how = draw(st.sampled_from(("truncate", "flip", "flip-header", "splice", "repeat", "noise", "intact")))
    if how == "noise":
        return draw(st.binary(max_size=8192))
    data = bytearray(seeds()[draw(st.sampled_from(sorted(seeds())))])
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if how in ("flip", "flip-header"):
        end = min(len(data), 128) if how == "flip-header" else len(data)
        for position, value in draw(st.lists(st.tuples(st.integers(0, end - 1), st.integers(0, 255)), max_size=16)):
            data[position] = value
        return bytes(data)
    if how == "splice":
        start = draw(st.integers(0, len(data)))
        length = draw(st.integers(0, 512))
        data[start : start + length] = draw(st.binary(max_size=512))
        return bytes(data)
    if how == "repeat":
        start = draw(st.integers(0, len(data)))
        return bytes(data[:start] + data[start // 2 :])
    return bytes(data)


def _text_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(ABSURD_VALUES),
        st.text(max_size=64),
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    )


@dataclass
class Part:
    name: str
    value: bytes
    filename: str | None = None
    content_type: str | None = None
    extra_headers: list[str] = field(default_factory=list)

    def encode(self, boundary: str) -> bytes:
        disposition = f'form-data; name="{self.name}"'
        if self.filename is not None:
            disposition += f'; filename="{self.filename}"'
        headers = [f"Content-Disposition: {disposition}", *self.extra_headers]
        if self.content_type is not None:
            headers.append(f"Content-Type: {self.content_type}")
        head = "".join(f"{h}\r\n" for h in headers).encode("utf-8", "surrogatepass")
        return f"--{boundary}\r\n".encode("utf-8", "surrogatepass") + head + b"\r\n" + self.value + b"\r\n"


PLAUSIBLE: dict[str, tuple[str, ...]] = {
    "model": ("whisper-1", "", "parakeet-tdt-0.6b-v3"),
    "language": ("en", "fr", "de", ""),
    "prompt": ("", "Voicemail from a customer."),
    "temperature": ("0", "0.2", "1", ""),
    "response_format": ("json", "text", "srt", "vtt", "verbose_json"),
    "timestamp_granularities[]": ("segment", "word"),
    "timestamp_granularities": ("segment,word",),
    "force": ("true", "false", "1", "0"),
}


EXTRA_PART_HEADERS = (
    "X-Junk: 1",
    "Content-Length: 12",
    "Content-Transfer-Encoding: base64",
    "Content-Transfer-Encoding: quoted-printable",
    "Content-Type: multipart/mixed; boundary=inner",
)


def _often(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.integers(0, 99)) < percent


def _part(draw: st.DrawFn, name: str) -> Part:
    """A part named ``name``: mostly a plausible value, else an absurd one; a file where a file is expected."""
    as_file = _often(draw, 90) if name == "file" else _often(draw, 10)
    if as_file:
        value = draw(damaged_audio())
    elif name == "url":
        value = draw(
            st.one_of(
                st.sampled_from(URLS),
                st.text("abcXYZ019/._-?=&%", max_size=40).map(lambda s: f"http://127.0.0.1:9/{s}"),
            )
        ).encode()
    elif name in ("user_uuid", "message_id") and _often(draw, 70):
        value = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)).encode("utf-8")
    elif name in PLAUSIBLE and _often(draw, 70):
        value = draw(st.sampled_from(PLAUSIBLE[name])).encode()
    else:
        value = draw(_text_values()).encode("utf-8", "surrogatepass")
    filename = (draw(_text_values()) if _often(draw, 30) else "vm.wav") if as_file else None
    content_type = draw(st.sampled_from((None, None, "audio/wav", "application/octet-stream", "text/html")))
    extra: list[str] = []
    if _often(draw, 10):
        extra = draw(st.lists(st.sampled_from(EXTRA_PART_HEADERS), min_size=1, max_size=3))
    return Part(name, value, filename, content_type, extra)


@dataclass
class RawRequest:
    """A POST to the transcription endpoint, as bytes on the wire (minus the request line)."""

    content_type: str | None
    body: bytes

    def headers(self) -> dict[str, str]:
        return {} if self.content_type is None else {"Content-Type": self.content_type}


@st.composite
def multipart_requests(draw: st.DrawFn) -> RawRequest:
    """Mostly well-framed forms with a file and hostile fields (those reach the most code: the decoder, the
    store, the worker); some with the framing, the boundary or the content type broken."""
    names = ["file"] if _often(draw, 85) else []
    names += draw(
        st.lists(st.one_of(st.sampled_from(FIELDS[1:]), st.sampled_from(FIELDS[1:]), _text_values()), max_size=5)
    )
    if _often(draw, 30):  # an identity: the asynchronous path
        names += ["user_uuid", "message_id"]
    body_parts = [_part(draw, name) for name in draw(st.permutations(names))]

    boundary = "wazo-fuzz-boundary"
    if _often(draw, 20):
        # RFC 2046's alphabet; a boundary may hold spaces but not end with one (nor can an HTTP header value).
        boundary = draw(st.text("abcXYZ0123456789'()+_,-./:=? ", min_size=1, max_size=72).map(str.rstrip).filter(bool))
    body = b"".join(p.encode(boundary) for p in body_parts) + f"--{boundary}--\r\n".encode()
    content_type: str | None = f"multipart/form-data; boundary={boundary}"

    if _often(draw, 25):  # broken framing
        damage = draw(st.sampled_from(("truncate", "flip", "prefix", "no-end", "bad-end")))
        if damage == "truncate":
            body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
        elif damage == "flip" and body:
            flipped = bytearray(body)
            for position, value in draw(
                st.lists(st.tuples(st.integers(0, len(body) - 1), st.integers(0, 255)), min_size=1, max_size=8)
            ):
                flipped[position] = value
            body = bytes(flipped)
        elif damage == "prefix":
            body = draw(st.binary(min_size=1, max_size=64)) + body
        elif damage == "no-end":
            body = body.removesuffix(f"--{boundary}--\r\n".encode())
        else:
            body = body.removesuffix(b"--\r\n") + draw(st.sampled_from((b"\r\n", b"", b"--", b"-- junk")))
    if _often(draw, 15):  # a wrong or broken content type
        content_type = draw(st.one_of(st.none(), st.sampled_from(CONTENT_TYPES).map(lambda t: t.format(b=boundary))))
    return RawRequest(content_type, body)


def send_raw(host: str, port: int, request: bytes, timeout: float = 15.0) -> bytes:
    """Send bytes as they are (no client library to fix them up) and return what comes back until close."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int | None:
    """The status code of a raw HTTP/1.1 response, or None when the server closed without answering."""
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])
