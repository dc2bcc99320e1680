"""Entry point of the real server in a process of its own: ``python -m tests.support.server_main``.

Configured like production, by the environment (MODEL_PATH, DB_PATH, PORT, SHUTDOWN_GRACE_SECS...), and run
by the same ``wazo_stt.api.serve.serve`` as ``wazo-stt serve``. Test knobs, read here only:
WAZO_TEST_DELAY (seconds each transcription sleeps first), WAZO_TEST_CRASH_ON_SECONDS (audio of that length
kills the process), WAZO_TEST_JOURNAL (file noting each transcription's start and end),
WAZO_TEST_ROLE=worker (``wazo-stt worker``: workers and /health only).

SIGXFSZ is ignored, so that the file-size limit a test puts on this process (``prlimit``) fails writes with
EFBIG, as a full disk fails them with ENOSPC, instead of killing the process.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tests.support.engines import SlowEngines
from wazo_stt.api.serve import serve
from wazo_stt.config import Settings
from wazo_stt.logs import setup_logging


def main() -> int:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    settings = Settings(_env_file=None)
    setup_logging(settings)
    crash = os.environ.get("WAZO_TEST_CRASH_ON_SECONDS")
    journal = os.environ.get("WAZO_TEST_JOURNAL")
    engines = SlowEngines(
        delay=float(os.environ.get("WAZO_TEST_DELAY", "0")),
        crash_on_seconds=float(crash) if crash else None,
        journal=Path(journal) if journal else None,
    )
    api = os.environ.get("WAZO_TEST_ROLE", "server") != "worker"
    return serve(settings, host="127.0.0.1", engine_loader=engines.loader, api=api)


if __name__ == "__main__":
    sys.exit(main())
