"""Take secrets out of URLs before they reach a log line, the database or an answer.

Client-given URLs (a Wazo voicemail link, later a webhook target) carry credentials in several places: the
query string (``?token=…``), path parameters (``/vm/1.wav;token=…``), and the userinfo (``http://TOKEN@pbx/``
or ``http://user:password@pbx/``). Every value in those places is replaced by ``REDACTED``; keys are kept so a
log still tells *which* parameters were sent. The fragment is dropped.

httpx logs each request URL at INFO and httpcore logs response headers (``Location`` may carry a token) at
DEBUG: :func:`install_log_redaction` puts a filter on those loggers. It is called at start-up (see
:mod:`wazo_stt.logs`), never at import, so importing this module changes no global state.
"""

from __future__ import annotations

import logging
import re
import urllib.parse

__all__ = ["REDACTED", "RedactingFilter", "install_log_redaction", "redact_text", "redact_url"]

REDACTED = "REDACTED"


def redact_url(url: str) -> str:
    """Return ``url`` with its userinfo, query values and path-parameter values replaced by ``REDACTED``.

    Never raises: an unparsable URL is cut at its query string and its userinfo and parameters redacted by
    pattern instead.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
        query = "&".join(_redact_item(item) for item in parts.query.split("&")) if parts.query else ""
        return urllib.parse.urlunsplit((parts.scheme, netloc, _redact_path(parts.path), query, ""))
    except ValueError:
        base, sep, _ = url.split("#", 1)[0].partition("?")
        base = _USERINFO_IN_TEXT.sub(rf"\1{REDACTED}@", _PATH_PARAM_IN_TEXT.sub(_redact_param_match, base))
        return f"{base}?{REDACTED}" if sep else base


def _redact_item(item: str) -> str:
    """``key=value`` → ``key=REDACTED``; a bare item (``?abcdef``, ``;abcdef``) may itself be a secret."""
    if not item:
        return item
    key, sep, _ = item.partition("=")
    return f"{key}={REDACTED}" if sep else REDACTED


def _redact_path(path: str) -> str:
    """Redact the ``;params`` of every path segment (RFC 3986 allows them in any segment)."""
    if ";" not in path:
        return path
    segments = []
    for segment in path.split("/"):
        name, *params = segment.split(";")
        segments.append(";".join([name, *(_redact_item(p) for p in params)]))
    return "/".join(segments)


def _redact_param_match(match: re.Match[str]) -> str:
    return match.group(1) + _redact_item(match.group(2))


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# A relative URL's query pairs (``?k=v``, ``&k=v``) and path parameters (``;k=v``), e.g. in a Location header.
_QUERY_VALUE_IN_TEXT = re.compile(r"([?&][^\s=&#'\"?;]+=)[^\s&#'\";]*")
_PATH_PARAM_IN_TEXT = re.compile(r"(;)([^\s/?#&;'\"]+)")
_USERINFO_IN_TEXT = re.compile(r"(//)[^/\s@'\"?#]+@")


def redact_text(text: str) -> str:
    """Redact every URL-ish thing in free text (log lines, exception strings).

    Absolute URLs go through :func:`redact_url`; relative ones (a ``Location`` header logged by httpcore) have
    their query pairs and path parameters redacted.
    """
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _QUERY_VALUE_IN_TEXT.sub(rf"\1{REDACTED}", text)
    text = _PATH_PARAM_IN_TEXT.sub(_redact_param_match, text)
    return _USERINFO_IN_TEXT.sub(rf"\1{REDACTED}@", text)


class RedactingFilter(logging.Filter):
    """Rewrite a log record so no URL secret reaches a handler: formatted once, redacted, arguments dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix, but must not leak either
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        return True


# Logger filters only see records logged on *that* logger (not on its children), hence every sub-logger.
HTTP_CLIENT_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def install_log_redaction(names: tuple[str, ...] = HTTP_CLIENT_LOGGERS) -> None:
    """Attach the redacting filter to each named logger; idempotent (a second call stacks nothing)."""
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
