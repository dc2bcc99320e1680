"""``python -m bench.uvicorn_defaults serve``: the server with uvicorn's defaults (httptools, no HTTP limits).

The baseline of the hostile benchmark's throughput table: what the server did before it ran its own HTTP
limits (src/wazo_stt/api/http_limits.py). Nothing else differs.
"""

from __future__ import annotations

import sys

from wazo_stt import cli
from wazo_stt.api import serve as serve_module

serve_module.uvicorn_limits = lambda settings: {}

if __name__ == "__main__":
    sys.exit(cli.main())
