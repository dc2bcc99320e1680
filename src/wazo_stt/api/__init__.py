"""HTTP layer only: parse requests, call the layers below, shape responses."""

from wazo_stt.api.app import create_app

__all__ = ["create_app"]
