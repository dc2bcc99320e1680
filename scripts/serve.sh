#!/usr/bin/env bash
# Install wazo-stt into .venv, fetch the Parakeet model once (into ./models/parakeet unless MODEL_PATH is set),
# and run the server on HOST:PORT (default 0.0.0.0:8000). Every setting of the README can be passed as env.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q .

export MODEL_PATH="${MODEL_PATH:-$PWD/models/parakeet}"
export DB_PATH="${DB_PATH:-$PWD/data/transcriptions.db}"
.venv/bin/wazo-stt download-model --dir "$MODEL_PATH"
exec .venv/bin/wazo-stt serve
