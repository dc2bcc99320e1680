"""``/openapi.json`` as the server really behaves, for client generators and schema-driven testers.

The transcription form is read by hand (see ``forms``), so FastAPI cannot see its fields: the multipart body is
declared here, field by field. Errors are OpenAI-shaped 400s, never FastAPI's 422, so the 422 FastAPI adds to
every route with parameters is removed, and each route lists the statuses it answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from wazo_stt.api.forms import GRANULARITIES, IDENTITY_MAX_CHARS
from wazo_stt.domain import ResponseFormat

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "enum": ["invalid_request_error", "rate_limit_error", "server_error"]},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_ERROR_DESCRIPTIONS = {
    400: "Bad request: the message and `param` say which field",
    404: "No such job or model",
    413: "The upload or the audio at the URL is larger than MAX_UPLOAD_MB",
    429: "The queue is full (see Retry-After)",
    500: "The transcription failed",
    503: "Model loading or unavailable, database unavailable, too many uploads being checked, or shutting down",
    504: "A synchronous transcription still running after SYNC_TIMEOUT_SECS (the job goes on; see X-Job-Id)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry of a route for these error statuses, each with OpenAI's error body."""
    return {
        status: {"description": _ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status in statuses
    }


_FLAG = {"type": "boolean", "default": False}

TRANSCRIPTION_FORM: dict[str, Any] = {
    "type": "object",
    "description": "Send `file` or `url` (exactly one).",
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The recording (any format FFmpeg decodes)"},
        "url": {"type": "string", "description": "Where to download the recording instead (http or https)"},
        "model": {"type": "string", "description": "A model id from /v1/models; `whisper-1` is the default's alias"},
        "language": {"type": "string", "description": "ISO-639-1 code; the model's own detection when absent"},
        "prompt": {"type": "string", "description": "Accepted for compatibility and ignored"},
        "response_format": {"type": "string", "enum": [f.value for f in ResponseFormat], "default": "json"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1, "description": "Accepted and ignored"},
        "timestamp_granularities[]": {
            "type": "array",
            "items": {"type": "string", "enum": list(GRANULARITIES)},
            "description": "With response_format=verbose_json only",
        },
        "include[]": {
            "type": "array",
            "items": {"type": "string", "enum": ["logprobs"]},
            "description": "`logprobs`: one log-probability per word, with response_format=json only",
        },
        "stream": {
            **_FLAG,
            "description": "Server-sent events transcript.text.delta / transcript.text.done (json or text format)",
        },
        "user_uuid": {"type": "string", "maxLength": IDENTITY_MAX_CHARS, "description": "With message_id: async"},
        "message_id": {"type": "string", "maxLength": IDENTITY_MAX_CHARS, "description": "With user_uuid: async"},
        "force": {**_FLAG, "description": "Transcribe the (user_uuid, message_id) pair again"},
        "callback_url": {
            "type": "string",
            "format": "uri",
            "description": "Where to POST the job's status when it ends (signed webhook; default WEBHOOK_URL)",
        },
    },
}

TRANSCRIPTION_REQUEST: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": TRANSCRIPTION_FORM}}}
}

TRANSCRIPTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The transcript (synchronous), the job (with user_uuid and message_id), or an event stream",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/plain": {"schema": {"type": "string"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
        "headers": {"X-Job-Id": {"description": "The job's id", "schema": {"type": "string"}}},
        # Where the job can be followed: lets clients (and schemathesis's stateful phase) chain the calls.
        "links": {
            name: {
                "operationRef": f"#/paths/~1v1~1audio~1transcriptions~1{{job_id}}{suffix}/get",
                "parameters": {"job_id": "$response.header.X-Job-Id"},
            }
            for name, suffix in (("JobStatus", ""), ("JobResult", "~1result"), ("JobEvents", "~1events"))
        },
    },
    **errors(400, 413, 429, 500, 503, 504),
}


def install_openapi(app: FastAPI) -> None:
    """Serve the schema without FastAPI's 422 (every validation error here is a 400)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
