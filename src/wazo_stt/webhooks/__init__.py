"""Webhooks instead of polling: when a job ends, its status is POSTed to the job's ``callback_url`` (or
``WEBHOOK_URL``), signed as Standard Webhooks specifies, from a durable outbox (``jobs/outbox.py``)."""

from wazo_stt.webhooks.delivery import RetryPolicy, WebhookDelivery
from wazo_stt.webhooks.signing import WebhookSecretError, parse_secret, sign
from wazo_stt.webhooks.target import CallbackRefused, check_callback_url

__all__ = [
    "CallbackRefused",
    "RetryPolicy",
    "WebhookDelivery",
    "WebhookSecretError",
    "check_callback_url",
    "parse_secret",
    "sign",
]
