"""Logging set-up: driver loggers held at WARNING whatever LOG_LEVEL says, unless LOG_LEVELS names them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from wazo_stt.config import Settings, parse_log_levels
from wazo_stt.logs import QUIET_LOGGERS, setup_logging


@pytest.fixture
def restore_levels() -> Iterator[None]:
    names = ["", *QUIET_LOGGERS, "sqlalchemy.engine"]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_drivers_stay_at_warning_at_debug(restore_levels: None) -> None:
    setup_logging(Settings(_env_file=None, log_level="debug"))  # type: ignore[call-arg]
    assert logging.getLogger().level == logging.DEBUG
    for name in ("sqlalchemy.engine.Engine", "aiosqlite", "asyncpg", "httpcore.http11", "multipart.multipart"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert logging.getLogger("wazo_stt.jobs.worker").isEnabledFor(logging.DEBUG)


def test_log_levels_opens_a_driver_by_name(restore_levels: None) -> None:
    setup_logging(Settings(_env_file=None, log_level="info", log_levels="sqlalchemy.engine=debug"))  # type: ignore[call-arg]
    assert logging.getLogger("sqlalchemy.engine.Engine").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("aiosqlite").isEnabledFor(logging.INFO)


def test_parse_log_levels() -> None:
    assert parse_log_levels(" a.b=debug , c=WARNING,") == {"a.b": logging.DEBUG, "c": logging.WARNING}
    for bad in ("a", "a=loud", "=debug"):
        with pytest.raises(ValidationError, match="log_levels"):
            Settings(_env_file=None, log_levels=bad)  # type: ignore[call-arg]
