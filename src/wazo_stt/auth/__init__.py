"""Who may call the API, and as which tenant: API keys (:mod:`.keys`). Knows nothing of HTTP; the FastAPI
dependency that reads the ``Authorization`` header lives in :mod:`wazo_stt.api.auth`."""

from wazo_stt.auth.keys import LOCAL_PRINCIPAL, ApiKeyError, KeyRing, Principal, key_id

__all__ = ["LOCAL_PRINCIPAL", "ApiKeyError", "KeyRing", "Principal", "key_id"]
