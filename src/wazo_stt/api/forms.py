"""Parse and validate the multipart form of ``POST /v1/audio/transcriptions`` before any audio is touched.

The form is read by hand rather than declared as FastAPI parameters: OpenAI's SDK sends
``timestamp_granularities[]``, errors must be 400 in OpenAI's shape (not 422), and a field sent twice or a file
sent where text is expected must get a clear message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from wazo_stt.api.errors import ApiError
from wazo_stt.domain import ResponseFormat

# Field values other than the audio are short; this bounds what a hostile client can make us buffer.
MAX_FIELD_BYTES = 64 * 1024
GRANULARITIES = ("segment", "word")
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off", ""}
IDENTITY_MAX_CHARS = 256


@dataclass(frozen=True, slots=True)
class TranscriptionForm:
    upload: UploadFile | None
    url: str | None
    model: str | None
    language: str | None
    response_format: ResponseFormat
    granularities: tuple[str, ...]
    user_uuid: str | None
    message_id: str | None
    force: bool
    stream: bool = False
    logprobs: bool = False
    callback_url: str | None = None  # where the job's webhook goes (api/callbacks.py checks it)

    @property
    def is_async(self) -> bool:
        return self.user_uuid is not None


async def read_form(request) -> FormData:
    try:
        return await request.form(max_files=2, max_fields=50, max_part_size=MAX_FIELD_BYTES)
    except MultiPartException as exc:
        raise ApiError(400, f"Invalid multipart body: {exc.message}") from exc
    except AssertionError as exc:  # starlette asserts on some malformed bodies
        raise ApiError(400, "Invalid form body") from exc


def _text(form: FormData, name: str, *aliases: str) -> str | None:
    values = [v for key in (name, *aliases) for v in form.getlist(key)]
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"{name} was given more than once", param=name)
    value = values[0]
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a text field, not a file", param=name)
    return value.strip()


def _identity(form: FormData, name: str) -> str | None:
    value = _text(form, name)
    if value is None or value == "":
        return None
    if len(value) > IDENTITY_MAX_CHARS:
        raise ApiError(400, f"{name} is longer than {IDENTITY_MAX_CHARS} characters", param=name)
    if any(ord(c) < 32 for c in value):
        raise ApiError(400, f"{name} contains control characters", param=name)
    return value


def _granularities(form: FormData) -> tuple[str, ...]:
    values: list[str] = []
    for key in ("timestamp_granularities[]", "timestamp_granularities"):
        for value in form.getlist(key):
            if not isinstance(value, str):
                raise ApiError(400, "timestamp_granularities must be text", param="timestamp_granularities")
            values.extend(v.strip() for v in value.split(",") if v.strip())
    for value in values:
        if value not in GRANULARITIES:
            raise ApiError(
                400,
                f"Invalid timestamp granularity '{value}'; use 'segment' and/or 'word'",
                param="timestamp_granularities",
            )
    return tuple(dict.fromkeys(values))


def _includes(form: FormData) -> bool:
    """OpenAI's ``include[]``: only ``logprobs`` exists; True when it was asked for."""
    values = [v for key in ("include[]", "include") for v in form.getlist(key)]
    for value in values:
        if not isinstance(value, str) or value.strip() != "logprobs":
            shown = value.strip() if isinstance(value, str) else "a file"
            raise ApiError(400, f"Invalid include value '{shown}'; the only one is 'logprobs'", param="include")
    return bool(values)


def _check_combinations(form: TranscriptionForm) -> None:
    """The combinations OpenAI refuses, refused the same way (a 400 naming the parameter)."""
    fmt = form.response_format
    if form.granularities and fmt is not ResponseFormat.VERBOSE_JSON:
        raise ApiError(
            400,
            f"timestamp_granularities is only supported with response_format verbose_json, not {fmt.value}",
            param="timestamp_granularities",
        )
    if form.logprobs and fmt is not ResponseFormat.JSON:
        raise ApiError(
            400, f"include[]=logprobs is only supported with response_format json, not {fmt.value}", param="include"
        )
    if form.stream and fmt not in (ResponseFormat.JSON, ResponseFormat.TEXT):
        raise ApiError(
            400, f"stream=true is only supported with response_format json or text, not {fmt.value}", param="stream"
        )


def _flag(form: FormData, name: str) -> bool:
    value = (_text(form, name) or "").lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ApiError(400, f"{name} must be true or false", param=name)


def _check_temperature(form: FormData) -> None:
    raw = _text(form, "temperature")
    if raw in (None, ""):
        return
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "temperature must be a number between 0 and 1", param="temperature") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ApiError(400, "temperature must be a number between 0 and 1", param="temperature")


def parse_transcription_form(form: FormData) -> TranscriptionForm:
    uploads = form.getlist("file")
    if len(uploads) > 1:
        raise ApiError(400, "Only one file can be sent", param="file")
    upload = uploads[0] if uploads else None
    if upload is not None and not isinstance(upload, UploadFile):
        raise ApiError(400, "file must be an uploaded file (multipart/form-data)", param="file")
    url = _text(form, "url") or None
    if upload is None and url is None:
        raise ApiError(400, "Either file or url is required", param="file")
    if upload is not None and url is not None:
        raise ApiError(400, "Send either file or url, not both", param="url")

    raw_format = (_text(form, "response_format") or "json").lower()
    try:
        response_format = ResponseFormat(raw_format)
    except ValueError:
        allowed = ", ".join(f.value for f in ResponseFormat)
        raise ApiError(
            400, f"Invalid response_format '{raw_format}'; use one of: {allowed}", param="response_format"
        ) from None

    _check_temperature(form)
    _text(form, "prompt")  # accepted for compatibility, validated as text, then ignored

    user_uuid = _identity(form, "user_uuid")
    message_id = _identity(form, "message_id")
    if (user_uuid is None) != (message_id is None):
        missing = "user_uuid" if user_uuid is None else "message_id"
        raise ApiError(
            400,
            f"{missing} is required when {'message_id' if missing == 'user_uuid' else 'user_uuid'}"
            " is given (send both or neither)",
            param=missing,
        )

    language = (_text(form, "language") or "").lower() or None
    parsed = TranscriptionForm(
        upload=upload,
        url=url,
        model=_text(form, "model") or None,
        language=language,
        response_format=response_format,
        granularities=_granularities(form),
        user_uuid=user_uuid,
        message_id=message_id,
        force=_flag(form, "force"),
        stream=_flag(form, "stream"),
        logprobs=_includes(form),
        callback_url=_text(form, "callback_url") or None,
    )
    _check_combinations(parsed)
    return parsed
