"""Standard Webhooks signatures (https://www.standardwebhooks.com/): what the receiver's stock verifier checks.

``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` with the key given as
``whsec_<base64>``. The timestamp is the attempt's (receivers refuse old ones), the id the event's (the same on
every retry, so receivers de-duplicate on it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
# The specification asks for 24 to 64 bytes of key.
MIN_SECRET_BYTES = 24


class WebhookSecretError(ValueError):
    pass


def parse_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret (the prefix is optional, as in the reference libraries)."""
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError("WEBHOOK_SECRET must be whsec_ followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise WebhookSecretError(f"WEBHOOK_SECRET must hold at least {MIN_SECRET_BYTES} bytes of key")
    return key


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def signed_headers(key: bytes, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, event_id, timestamp, body),
        "content-type": "application/json",
    }
