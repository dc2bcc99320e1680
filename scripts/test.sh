#!/usr/bin/env bash
# Install wazo-stt with its test extras into .venv and run the whole test suite (slow tests included).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# espeak-ng (speech test audio), sox (telephone codecs) and chromium (the web page's browser tests) come from the
# system; install them where we can.
if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox chromium >/dev/null) \
      || echo "warning: could not install espeak-ng/sox/chromium; tests that need them will be skipped" >&2
  else
    echo "warning: espeak-ng/sox/chromium missing; tests that need them will be skipped" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,whisper]'
.venv/bin/ruff check src tests bench
.venv/bin/python -m pytest "$@"
