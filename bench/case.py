"""One measured case in a fresh process: ``python -m bench.case '<json spec>'`` prints one JSON line of results.

A fresh process per case gives every case its own peak RSS (``ru_maxrss`` counts from process start) and its
own ONNX Runtime session with exactly the options under test. Runners:

- ``chunked``: our engine (``ChunkedEngine`` + ``ParakeetRecognizer`` + Silero VAD), as the server runs it
  (``float_convs: false``: with the encoder's int8 convolutions as downloaded).
- ``onepass``: the same recogniser on the whole file in one encoder call (possible up to 400 s).
- ``onnx-asr``: plain ``onnx_asr.load_model(...).recognize`` with the session options and execution provider
  under test, on whole files or on pre-cut chunks (``chunks``: an ``.npz`` of 16 kHz float32 arrays). This
  runner imports only numpy and onnx-asr, so it also runs in a virtualenv with another ONNX Runtime build
  (``onnxruntime-openvino``).
- ``encoder``: the encoder graph alone (97% of the time), fed mel-shaped input of each chunk's length, on ONNX
  Runtime's CPU provider or on OpenVINO's own runtime (``backend: openvino``), which reads the same ONNX file
  where the OpenVINO execution provider for ONNX Runtime cannot run it.

Timed: decoding plus transcription of each file (or recognition of each chunk); model loading and one warm-up
call are reported separately, because a running server has paid both long before a request arrives.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
ONNX_ASR_NAME = "nemo-parakeet-tdt-0.6b-v3"


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _session_options(ort_spec: dict[str, Any]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(ort_spec.get("intra_op_threads", 0))
    options.inter_op_num_threads = int(ort_spec.get("inter_op_threads", 0))
    level = ort_spec.get("graph_optimization_level", "ALL")
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, f"ORT_{'ENABLE_' if level != 'DISABLE_ALL' else ''}{level}"
    )
    options.enable_cpu_mem_arena = bool(ort_spec.get("enable_cpu_mem_arena", True))
    options.enable_mem_pattern = bool(ort_spec.get("enable_mem_pattern", True))
    if ort_spec.get("execution_mode", "sequential") == "parallel":
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    for key, value in ort_spec.get("config_entries", {}).items():
        options.add_session_config_entry(key, str(value))
    return options


def _load_audio(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """Inputs as (name, item): file paths (decoded inside the timed region, as the server does) or arrays."""
    if "chunks" in spec:
        with np.load(spec["chunks"]) as data:
            return [(key, data[key]) for key in sorted(data.files)]
    return [(Path(p).name, Path(p)) for p in spec["files"]]


def _decode(item: Any) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return item
    from wazo_stt.audio import decode_audio

    return decode_audio(item).samples


def _encoder(spec: dict[str, Any]):
    """The encoder alone: input of the right shape (values do not change int8 speed), output discarded."""
    path = Path(spec["model"]) / f"encoder-model.{spec.get('quantization', 'int8')}.onnx"
    rng = np.random.default_rng(0)
    if spec.get("backend", "ort") == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(path), "CPU", spec.get("openvino_config", {}))

        def run(features: np.ndarray, length: np.ndarray) -> None:
            compiled({"audio_signal": features, "length": length})

        built = {"openvino": ov.__version__}
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(
            path, sess_options=_session_options(spec.get("ort", {})), providers=["CPUExecutionProvider"]
        )

        def run(features: np.ndarray, length: np.ndarray) -> None:
            session.run(None, {"audio_signal": features, "length": length})

        built = {"onnxruntime": ort.__version__}

    def encode(samples: np.ndarray) -> dict[str, Any]:
        frames = len(samples) // 160 + 1  # the mel front end's hop is 10 ms
        features = rng.standard_normal((1, 128, frames), dtype=np.float32)
        run(features, np.array([frames], dtype=np.int64))
        return {"chunks": 1, "sent_seconds": len(samples) / SAMPLE_RATE, "chars": 0}

    return encode, built


def _build(spec: dict[str, Any]):
    """A callable ``samples -> dict`` for the runner under test, and a description of what was built."""
    runner = spec["runner"]
    model = Path(spec["model"])
    if runner == "encoder":
        return _encoder(spec)
    if runner == "onnx-asr":
        import onnx_asr
        import onnxruntime as ort

        providers = spec.get("providers") or ["CPUExecutionProvider"]
        providers = [tuple(p) if isinstance(p, list) else p for p in providers]
        asr = onnx_asr.load_model(
            ONNX_ASR_NAME,
            model,
            quantization=spec.get("quantization", "int8"),
            sess_options=_session_options(spec.get("ort", {})),
            providers=providers,
        )

        def recognize(samples: np.ndarray) -> dict[str, Any]:
            text = asr.recognize(samples, sample_rate=SAMPLE_RATE)
            return {"chunks": 1, "sent_seconds": len(samples) / SAMPLE_RATE, "chars": len(text)}

        return recognize, {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers()}

    from wazo_stt.engine.parakeet import ParakeetRecognizer
    from wazo_stt.engine.pipeline import ChunkedEngine, ChunkPlanner
    from wazo_stt.engine.vad import SpeechDetector

    class RecordingPlanner(ChunkPlanner):
        """The engine's planner, keeping its last plan so chunks can be counted without running the VAD twice."""

        last: list = []  # noqa: RUF012  # replaced per call

        def plan(self, audio: np.ndarray) -> list:
            self.last = super().plan(audio)
            return self.last

    recognizer = ParakeetRecognizer(
        model,
        intra_op_threads=int(spec.get("ort", {}).get("intra_op_threads", 0)),
        float_convs=bool(spec.get("float_convs", True)),
    )
    if runner == "onepass":
        planner = RecordingPlanner(None, max_seconds=10.0**6)
    else:
        detector = SpeechDetector() if spec.get("vad", True) else None
        planner = RecordingPlanner(
            detector,
            max_seconds=float(spec.get("chunk_max_secs") or recognizer.max_chunk_seconds),
            overlap_seconds=float(spec.get("overlap", 2.0)),
        )
    engine = ChunkedEngine(recognizer, planner)

    def transcribe(samples: np.ndarray) -> dict[str, Any]:
        transcript = engine.transcribe(samples, None)
        chunks = planner.last
        sent = sum(c.end - c.start for c in chunks) / SAMPLE_RATE
        return {
            "chunks": len(chunks),
            "sent_seconds": round(sent, 2),
            "chars": len(transcript.text),
            "text_sha1": hashlib.sha1(transcript.text.encode()).hexdigest(),
        }

    return transcribe, {}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    process, built = _build(spec)
    load_seconds = time.perf_counter() - start
    rss_loaded = _rss()
    items = _load_audio(spec)
    if spec.get("warm_up", True):
        # Five seconds of the first input: ONNX Runtime's first call allocates and (OpenVINO) compiles.
        first = _decode(items[0][1])[: 5 * SAMPLE_RATE].copy()  # not a view: the whole recording must go
        t = time.perf_counter()
        process(first)
        warm_up_seconds = time.perf_counter() - t
        del first
    else:
        warm_up_seconds = 0.0
    rss_warm = _rss()

    def one(named: tuple[str, Any]) -> dict[str, Any]:
        name, item = named
        t = time.perf_counter()
        samples = _decode(item)
        info = process(samples)
        wall = time.perf_counter() - t
        return {"name": name, "audio_seconds": round(len(samples) / SAMPLE_RATE, 3), "wall": round(wall, 4), **info}

    streams = int(spec.get("streams", 1))
    t0, cpu0 = time.perf_counter(), _cpu()
    if streams == 1:
        results = [one(item) for item in items]
    else:
        # Several requests at once sharing one session, as WORKERS>1 would run them.
        with ThreadPoolExecutor(streams) as pool:
            results = list(pool.map(one, items))
    total_wall = time.perf_counter() - t0
    cpu_seconds = _cpu() - cpu0
    audio = sum(r["audio_seconds"] for r in results)
    return {
        "spec": spec,
        "load_seconds": round(load_seconds, 2),
        "warm_up_seconds": round(warm_up_seconds, 3),
        "rss_loaded": rss_loaded,
        "rss_warm": rss_warm,
        "peak_rss": _peak_rss(),
        "rss_end": _rss(),
        "items": results,
        "audio_seconds": round(audio, 3),
        "total_wall": round(total_wall, 4),
        "cpu_seconds": round(cpu_seconds, 2),
        "x_realtime": round(audio / total_wall, 3) if total_wall else None,
        **built,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(run(spec)), flush=True)


if __name__ == "__main__":
    main()
