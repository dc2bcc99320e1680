"""Server configuration, read from the environment (and an optional ``.env`` file).

Variable names are those of the original deployment (see API.md), so an existing ``docker-compose.yml`` keeps
working unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wazo_stt.models.catalog import DEFAULT_PARAKEET, PARAKEET_MODELS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    model_path: Path = Field(Path("/models/parakeet"), description="Directory of the Parakeet ONNX files")
    model_name: str = Field(
        DEFAULT_PARAKEET, description="Which Parakeet export lives in MODEL_PATH (v3 is multilingual)"
    )
    model_quantization: str = Field("int8", description="Suffix of the ONNX files ('int8' or '' for fp32)")
    float_convs: bool = Field(
        True,
        description="Run Parakeet's int8 depthwise convolutions as float ones with the same output (about 30% less"
        " encoder time); the rewritten encoder is kept in MODEL_PATH/float-convs/",
    )
    enable_parakeet: bool = Field(True, description="Load Parakeet from MODEL_PATH (false: a Whisper-only server)")
    embedded_fallback: bool = Field(
        True,
        description="Serve the embedded Whisper tiny.en (English only, `whisper` extra) while Parakeet's files are"
        " missing, instead of answering 503",
    )
    whisper_model_path: Path | None = Field(
        None, description="Directory of a CTranslate2 Whisper model (faster-whisper); empty: no Whisper engine"
    )
    whisper_model_id: str = Field("", description="Id of the Whisper model in /v1/models (default: from its files)")
    whisper_beam_size: int = Field(5, ge=1, le=20, description="Whisper beam width (1: greedy, fastest)")
    default_model: str = Field(
        "", description="Model id, 'parakeet' or 'whisper' meant by whisper-1 and an omitted model (default: Parakeet)"
    )
    db_path: Path = Field(Path("/data/transcriptions.db"), description="SQLite database file (without DATABASE_URL)")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the job database, e.g. postgresql+asyncpg://user:pass@host/db to run several "
        "servers and workers on one queue (docs/scaling.md); empty: SQLite at DB_PATH",
    )
    lease_secs: float = Field(
        60,
        ge=1,
        description="A running job's lease: if its worker stops renewing it (killed, lost), another "
        "worker takes the job back this long after the last renewal",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="SQLite fsync policy: FULL keeps every accepted job through a power loss"
    )
    host: str = "0.0.0.0"
    port: int = 8000
    log_level: str = "info"
    log_format: Literal["plain", "json"] = Field(
        "plain", description="'json': one JSON object per line (time, level, logger, message, job_id, request_id)"
    )

    max_queue_size: int = Field(100, ge=1)
    max_queue_audio_secs: float = Field(
        36000,
        gt=0,
        description="Audio seconds waiting in the queue at most (all tenants); more gets a 429 "
        "(a file alone in an empty queue is always accepted)",
    )
    rate_limit_per_minute: float = Field(
        0,
        ge=0,
        description="Submissions per minute per API key's tenant (per server process; bursts up to one "
        "minute's worth); 0: no limit",
    )
    max_upload_mb: float = Field(100, gt=0)
    max_audio_duration_secs: float = Field(14400, gt=0)
    decode_memory_mb: float = Field(
        64, gt=0, description="Memory for checking uploads; each decode in flight reserves 16 MB (64: 4 at once)"
    )
    decode_wait_secs: float = Field(
        10, ge=0, description="How long a submission waits for a decode slot before a 503 with Retry-After"
    )
    url_fetch_timeout_secs: float = Field(60, gt=0)
    url_verify_tls: bool = Field(True, description="Verify TLS certificates of audio URLs")
    url_ca_bundle: Path | None = Field(None, description="CA bundle for PBXs with a private certificate authority")
    url_allowed_hosts: str = Field(
        "", description="Comma-separated host patterns (fnmatch) audio URLs may point to; empty allows any"
    )
    url_detailed_errors: bool = Field(
        False,
        description="Tell clients why an audio URL failed (refused, timeout, TLS, HTTP status); off: one error for all",
    )
    text_retention_days: int = Field(365, ge=0, description="0 keeps transcripts forever")

    enable_vad: bool = Field(True, description="Silero VAD: skip silence and cut chunks in pauses")
    vad_pad_ms: float = Field(
        100, ge=0, le=1000, description="Silence kept before and after each stretch of speech the VAD finds"
    )
    chunk_max_secs: float | None = Field(
        None, ge=5, le=300, description="Longest chunk sent to the model at once (default: 20 s Parakeet, 29 s Whisper)"
    )
    chunk_overlap_secs: float = Field(2.0, ge=0, le=10, description="Overlap where a chunk must cut speech")

    workers: int | Literal["auto"] = Field(
        "auto",
        description="Jobs transcribed at once in this process (auto: 2 on 2 cores or more, else 1; 0: API only)",
    )
    chunks_at_once: int | Literal["auto"] = Field(
        "auto",
        description="Parakeet inferences at once in this process, every job's counted: a lone recording's next "
        "chunk starts beside the current one while fewer run (auto: 2 on 2 cores or more, else 1; 1: off)",
    )
    job_memory_mb: float = Field(
        512, ge=0, description="A job starts alongside a running one only while this much memory is free (0: always)"
    )
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime threads per inference (0: one per core)")
    sync_timeout_secs: float = Field(3600, gt=0, description="How long a synchronous request waits for its job")
    http_max_header_kb: int = Field(64, ge=1, description="Largest request line + headers; larger gets a 400")
    http_header_timeout_secs: float = Field(10, gt=0, description="Time a client has to send a request's headers")
    http_body_idle_timeout_secs: float = Field(
        60, gt=0, description="A request body that stops arriving for this long is dropped"
    )
    http_keep_alive_secs: float = Field(5, gt=0, description="Idle keep-alive connections are closed after this")
    http_max_connections: int = Field(
        1000, ge=1, description="Open connections at most (lowered below the file-descriptor limit); then 503"
    )
    cors_origins: str = Field(
        "*", description="Comma-separated origins allowed by CORS: the portal's origin ('*' only for a local install)"
    )
    api_keys: str = Field(
        "", description="API keys, 'key1:tenant1,key2:tenant2[:admin]'; set (or API_KEYS_FILE set): keys required"
    )
    api_keys_file: Path | None = Field(
        None, description="File of API keys, one 'KEY TENANT [admin]' per line; re-read when it changes"
    )
    log_levels: str = Field(
        "", description="Per-logger levels, 'sqlalchemy.engine=debug,httpx=info' (driver loggers stay at warning)"
    )
    shutdown_grace_secs: float = Field(
        30, ge=0, description="On SIGTERM, how long the running job may finish before it is put back in the queue"
    )
    db_busy_timeout_ms: int = Field(
        10000, ge=0, description="How long a database write waits for a lock before the request gets a 503"
    )

    @field_validator("model_name")
    @classmethod
    def _known_parakeet(cls, value: str) -> str:
        if value not in PARAKEET_MODELS:  # the catalogue is the one list of exports
            raise ValueError(f"unknown Parakeet export {value!r}; choose one of {', '.join(PARAKEET_MODELS)}")
        return value

    webhook_url: str = Field("", description="Callback URL of every job's webhook unless the job gives callback_url")
    webhook_secret: SecretStr = Field(
        SecretStr(""), description="whsec_<base64> key that signs webhooks (Standard Webhooks); needed for webhooks"
    )
    webhook_timeout_secs: float = Field(10, gt=0, description="How long one webhook POST may take")
    webhook_retry_first_secs: float = Field(5, gt=0, description="Pause after the first failed webhook attempt")
    webhook_retry_max_secs: float = Field(3600, gt=0, description="Longest pause between webhook attempts")
    webhook_retry_hours: float = Field(24, gt=0, description="How long a webhook is retried before giving up")
    webhook_poll_secs: float = Field(1, gt=0, description="How often the outbox is checked for due webhooks")

    @model_validator(mode="after")
    def _webhook_url_needs_secret(self) -> Settings:
        if self.webhook_url.strip() and not self.webhook_secret.get_secret_value().strip():
            raise ValueError("WEBHOOK_URL needs WEBHOOK_SECRET (whsec_<base64>) to sign the webhooks")
        return self

    @field_validator("workers", mode="before")
    @classmethod
    def _jobs_or_auto(cls, value: object) -> object:
        return _count_or_auto(value, "jobs", minimum=0)

    @field_validator("chunks_at_once", mode="before")
    @classmethod
    def _inferences_or_auto(cls, value: object) -> object:
        return _count_or_auto(value, "inferences", minimum=1)

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("whisper_model_path", "chunk_max_secs", "api_keys_file", "url_ca_bundle", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty value, as compose files write an unset variable, means "not set": no Whisper (not "."), the
        # engine's own chunk bound.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_levels")
    @classmethod
    def _valid_log_levels(cls, value: str) -> str:
        parse_log_levels(value)
        return value

    @property
    def log_level_map(self) -> dict[str, int]:
        """``LOG_LEVELS`` as {logger name: level}."""
        return parse_log_levels(self.log_levels)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def url_allowed_host_list(self) -> list[str]:
        return [h.strip().lower() for h in self.url_allowed_hosts.split(",") if h.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def parse_log_levels(value: str) -> dict[str, int]:
    """``name=level,name=level`` → {logger name: level}; raises ValueError on a bad item."""
    levels: dict[str, int] = {}
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        name, sep, level = item.partition("=")
        number = logging.getLevelName(level.strip().upper())
        if not sep or not name.strip() or not isinstance(number, int):
            raise ValueError(f"{item!r} is not logger=level (level: debug, info, warning, error)")
        levels[name.strip()] = number
    return levels


def _count_or_auto(value: object, what: str, *, minimum: int) -> int | str:
    """A whole number of ``minimum`` or more, or "auto": one clear message instead of pydantic's two (one per
    member of the union)."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) < minimum:
        raise ValueError(f"expected a number of {what} ({minimum} or more) or 'auto', got {value!r}")
    return int(text)
