"""The API-key check as a FastAPI dependency, applied to every route but the public ones (``/health``).

The caller's :class:`~wazo_stt.auth.Principal` is returned (routes pass its tenant to the store as their scope)
and also put on ``request.state.principal`` for middleware and logs. A missing or wrong key is a 401 in OpenAI's
shape (``invalid_api_key``) with ``WWW-Authenticate: Bearer``, which the openai SDK raises as
``AuthenticationError``.
"""

from __future__ import annotations

import logging

from fastapi import Request

from wazo_stt.api.errors import ApiError
from wazo_stt.auth import KeyRing, Principal
from wazo_stt.logs import bind_tenant

log = logging.getLogger(__name__)

# Container health checks call this without a key.
PUBLIC_PATHS = frozenset({"/health"})
# Who calls a public path without a valid key (keys on): no tenant's data, no admin.
ANONYMOUS = Principal(tenant="", admin=False, key_id="")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(request: Request) -> Principal:
    """Resolve the request's API key to its principal, or answer 401."""
    keyring: KeyRing = request.app.state.keyring
    presented = _bearer(request)
    principal = keyring.authenticate(presented)
    if principal is None and request.url.path in PUBLIC_PATHS:
        principal = ANONYMOUS
    if principal is None:
        if presented:  # for fail2ban and the like; never the key itself
            client = request.client.host if request.client else "?"
            log.info("Refused %s %s from %s: incorrect API key", request.method, request.url.path, client)
        message = (
            "Incorrect API key provided"
            if presented
            else "Missing API key: send it as 'Authorization: Bearer YOUR_KEY' (the openai SDK's api_key)"
        )
        raise ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    bind_tenant(principal.tenant)  # the tenant on the request's log lines
    return principal
