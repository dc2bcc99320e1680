"""Logging set-up for the server, done once at start-up (never at import).

Two rules keep personal data and secrets out of the log, whatever ``LOG_LEVEL`` says:

* **Driver loggers stay at WARNING.** At DEBUG, SQLAlchemy echoes every statement with its parameters and
  aiosqlite every call with its result: transcript text, by the hundreds of lines per job. Those loggers (and
  other chatty libraries') are held at WARNING unless named in ``LOG_LEVELS`` (``sqlalchemy.engine=debug``),
  which is an explicit, per-logger choice for a debugging session.
* **URL secrets are redacted** on the HTTP client's loggers (:func:`wazo_stt.netguard.install_log_redaction`).

Our own code never logs transcript text at any level (tests/test_auth_logs.py checks a job run at DEBUG).
"""

from __future__ import annotations

import logging

from wazo_stt.config import Settings
from wazo_stt.netguard import install_log_redaction

__all__ = ["QUIET_LOGGERS", "setup_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Libraries that log data (SQL parameters, query results, HTTP headers and bodies) at INFO or DEBUG.
QUIET_LOGGERS = (
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "alembic",
    "httpcore",
    "hpack",
    "h2",
    "h11",
    "multipart",
    "python_multipart",
    "urllib3",
    "filelock",
    "huggingface_hub",
    "faster_whisper",
    "asyncio",
)


def setup_logging(settings: Settings) -> None:
    """Configure the root logger from ``LOG_LEVEL``, quiet the drivers, apply ``LOG_LEVELS``, redact URLs."""
    logging.basicConfig(level=settings.log_level.upper(), format=FORMAT)
    logging.getLogger().setLevel(settings.log_level.upper())
    explicit = settings.log_level_map
    for name in QUIET_LOGGERS:
        if name not in explicit:
            logging.getLogger(name).setLevel(logging.WARNING)
    for name, level in explicit.items():
        logging.getLogger(name).setLevel(level)
    install_log_redaction()
