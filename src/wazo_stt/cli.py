"""The ``wazo-stt`` command: ``serve`` the API (other subcommands build on the same pipeline)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from wazo_stt import __version__
from wazo_stt.config import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from wazo_stt.api import create_app

    settings = Settings()
    host = args.host or settings.host
    port = args.port or settings.port
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wazo-stt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"wazo-stt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (configured by environment variables)")
    serve.add_argument("--host", help="bind address (default: HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default: PORT or 8000)")
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
