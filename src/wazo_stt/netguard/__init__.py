"""Outbound network safety shared by everything that calls a client-chosen URL (audio ``url=``, webhooks):
the address guard (:mod:`.guard`) and URL secret redaction (:mod:`.redaction`)."""

from wazo_stt.netguard.guard import (
    GuardError,
    HostRefused,
    HostUnresolvable,
    NetworkGuard,
    PinnedTarget,
    blocked_reason,
    pin,
)
from wazo_stt.netguard.redaction import REDACTED, RedactingFilter, install_log_redaction, redact_text, redact_url

__all__ = [
    "REDACTED",
    "GuardError",
    "HostRefused",
    "HostUnresolvable",
    "NetworkGuard",
    "PinnedTarget",
    "RedactingFilter",
    "blocked_reason",
    "install_log_redaction",
    "pin",
    "redact_text",
    "redact_url",
]
