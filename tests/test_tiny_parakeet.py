"""The tiny Parakeet stand-in, through the real onnx-asr: file layout, transcripts, timestamps, telephone audio.

Every server test trusts that `render(pieces)` transcribes to exactly `expected_text(pieces)` with each token
within one encoder frame of its burst. These tests pin that contract down with nothing but onnx-asr in between,
so a failure here points at the model, not at the server.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import av
import numpy as np
import onnx_asr
import onnxruntime as ort
import pytest
from onnx_asr.adapters import TimestampedResultsAsrAdapter
from onnx_asr.asr import TimestampedResult

from tests.support.tiny_parakeet import (
    FRAME_SECONDS,
    FREQS,
    VOCAB,
    build_tiny_parakeet,
    expected_text,
    render,
)

# Every token once, in an order that mixes word starts, a mid-word piece and punctuation; the starts are off the
# 80 ms grid on purpose.
SENTENCE = [
    ("▁hello", 0.3),
    ("▁world", 0.75),
    (",", 1.2),
    ("▁bon", 1.65),
    ("jour", 2.05),
    ("?", 2.5),
    ("▁the", 2.95),
    ("▁cat", 3.4),
    (".", 3.85),
]
SENTENCE_SECONDS = 4.4


def load(model_dir: Path, name: str = "nemo-parakeet-tdt-0.6b-v3", **kwargs: object) -> TimestampedResultsAsrAdapter:
    return onnx_asr.load_model(name, model_dir, quantization="int8", **kwargs).with_timestamps()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def asr(tiny_model_dir: Path) -> TimestampedResultsAsrAdapter:
    return load(tiny_model_dir)


def resample(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """PyAV (libswresample), the resampler the server's decoder uses too."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_out)
    frame = av.AudioFrame.from_ndarray(signal[None, :].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = rate_in
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([f.to_ndarray()[0] for f in frames])


def assert_heard(result: TimestampedResult, pieces: list[tuple[str, float]]) -> None:
    """Exact text and tokens, each token within one encoder frame of its burst, finite log-probabilities."""
    assert result.text == expected_text([p for p, _ in pieces])
    assert result.tokens == [p.replace("▁", " ") for p, _ in pieces]
    assert result.timestamps is not None and result.logprobs is not None
    for timestamp, (piece, start) in zip(result.timestamps, pieces, strict=True):
        assert abs(timestamp - start) <= FRAME_SECONDS, (piece, start, timestamp)
    assert all(math.isfinite(lp) and lp <= 0 for lp in result.logprobs)


def test_build_writes_the_istupakov_int8_layout(tmp_path: Path) -> None:
    started = time.perf_counter()
    out = build_tiny_parakeet(tmp_path / "model")
    assert time.perf_counter() - started < 2
    assert out == tmp_path / "model"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "decoder_joint-model.int8.onnx",
        "encoder-model.int8.onnx",
        "nemo128.onnx",
        "vocab.txt",
    ]
    assert json.loads((out / "config.json").read_text()) == {
        "model_type": "nemo-conformer-tdt",
        "features_size": 128,
        "subsampling_factor": 8,
        "max_tokens_per_step": 10,
    }
    lines = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [f"{piece} {i}" for i, piece in enumerate(VOCAB)] + [f"<blk> {len(VOCAB)}"]

    def interface(path: Path) -> tuple[list[tuple[str, str, list]], list[tuple[str, str, list]]]:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return (
            [(i.name, i.type, [d if isinstance(d, int) else None for d in i.shape]) for i in session.get_inputs()],
            [(o.name, o.type, [d if isinstance(d, int) else None for d in o.shape]) for o in session.get_outputs()],
        )

    assert interface(out / "encoder-model.int8.onnx") == (
        [("audio_signal", "tensor(float)", [None, 128, None]), ("length", "tensor(int64)", [None])],
        [("outputs", "tensor(float)", [None, len(VOCAB), None]), ("encoded_lengths", "tensor(int64)", [None])],
    )
    inputs, outputs = interface(out / "decoder_joint-model.int8.onnx")
    hidden = inputs[3][2][2]
    assert isinstance(hidden, int)
    assert inputs == [
        ("encoder_outputs", "tensor(float)", [None, len(VOCAB), None]),
        ("targets", "tensor(int32)", [None, None]),
        ("target_length", "tensor(int32)", [None]),
        ("input_states_1", "tensor(float)", [2, None, hidden]),
        ("input_states_2", "tensor(float)", [2, None, hidden]),
    ]
    assert outputs == [
        ("outputs", "tensor(float)", [None, None, None, len(VOCAB) + 1 + 5]),
        ("prednet_lengths", "tensor(int32)", [None]),
        ("output_states_1", "tensor(float)", [2, None, hidden]),
        ("output_states_2", "tensor(float)", [2, None, hidden]),
    ]


def test_encoder_lengths_follow_nemo_subsampling(tiny_model_dir: Path) -> None:
    """Three stride-2 convolutions: length -> (length - 1) // 2 + 1, three times; the tensor is ceil(T / 8)."""
    session = ort.InferenceSession(tiny_model_dir / "encoder-model.int8.onnx", providers=["CPUExecutionProvider"])
    frames = np.zeros((3, 128, 101), dtype=np.float32)
    outputs, lengths = session.run(None, {"audio_signal": frames, "length": np.array([100, 57, 1])})
    assert outputs.shape == (3, len(VOCAB), 13)
    assert lengths.tolist() == [13, 8, 1]


def test_every_token_with_its_timestamp(asr: TimestampedResultsAsrAdapter) -> None:
    assert_heard(asr.recognize(render(SENTENCE, SENTENCE_SECONDS), sample_rate=16000), SENTENCE)


def test_repeated_bursts_repeat_the_token(asr: TimestampedResultsAsrAdapter) -> None:
    # 0.2 s bursts, 0.1 s gaps: the shortest pause render() promises to keep apart.
    pieces = [("▁cat", 0.3), ("▁cat", 0.6), ("▁cat", 0.9), ("?", 1.4), ("?", 1.7)]
    assert_heard(asr.recognize(render(pieces, 2.2), sample_rate=16000), pieces)


@pytest.mark.parametrize("path", ["8k given as 8k", "16k -> 8k -> 16k"])
def test_telephone_audio_gives_the_same_tokens(asr: TimestampedResultsAsrAdapter, path: str) -> None:
    narrowband = resample(render(SENTENCE, SENTENCE_SECONDS), 16000, 8000)
    if path == "8k given as 8k":
        result = asr.recognize(narrowband, sample_rate=8000)  # onnx-asr's own 8 -> 16 kHz resampler
    else:
        result = asr.recognize(resample(narrowband, 8000, 16000), sample_rate=16000)
    assert_heard(result, SENTENCE)


def test_silence_and_low_noise_give_nothing(asr: TimestampedResultsAsrAdapter) -> None:
    silence = render([], 2.0)
    assert not silence.any()  # digital silence, as silence detectors expect
    noise = np.random.default_rng(7).normal(0.0, 0.003, 3 * 16000).astype(np.float32)
    for signal in (silence, noise):
        result = asr.recognize(signal, sample_rate=16000)
        assert result.text == "" and result.tokens == []


def test_digital_silence_around_a_rendering_changes_nothing(asr: TimestampedResultsAsrAdapter) -> None:
    """Padding with zeros (as a server might) must not turn the noise floor's start into phantom tokens."""
    pieces = [("▁hello", 0.2), ("▁world", 0.6)]
    padded = np.concatenate([np.zeros(12000, np.float32), render(pieces, 1.0), np.zeros(20000, np.float32)])
    assert_heard(asr.recognize(padded, sample_rate=16000), [(p, s + 0.75) for p, s in pieces])


def test_v2_name_loads_the_same_directory(tiny_model_dir: Path) -> None:
    result = load(tiny_model_dir, "nemo-parakeet-tdt-0.6b-v2").recognize(render(SENTENCE, SENTENCE_SECONDS))
    assert_heard(result, SENTENCE)


def test_batches_and_the_onnx_preprocessor_agree(tiny_model_dir: Path) -> None:
    """Padded batches, and the ONNX feature extractor onnx-asr uses off-CPU, hear what the default path hears."""
    short = [("▁the", 0.3), ("▁cat", 0.7)]
    signals = [render(short, 1.2), render(SENTENCE, SENTENCE_SECONDS)]
    for asr in (load(tiny_model_dir), load(tiny_model_dir, preprocessor_config={"use_numpy_preprocessors": False})):
        first, second = asr.recognize(signals, sample_rate=16000)
        assert_heard(first, short)
        assert_heard(second, SENTENCE)


def test_expected_text_follows_onnx_asr_joining() -> None:
    assert expected_text(["▁hello", "▁world", "▁bon", "jour", "."]) == "hello world bonjour."
    assert expected_text(["▁the", "▁cat", "?", "▁hello", ","]) == "the cat? hello,"
    assert expected_text([]) == ""


def test_frequencies_fit_the_telephone_band_and_stay_apart() -> None:
    assert list(FREQS) == VOCAB
    tones = sorted(FREQS.values())
    assert tones[0] >= 300 and tones[-1] <= 3500
    assert min(b - a for a, b in itertools.pairwise(tones)) >= 300


def test_render_refuses_what_the_model_could_not_hear() -> None:
    with pytest.raises(KeyError):
        render([("▁goodbye", 0.1)], 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        render([("▁hello", 0.9)], 1.0)
    with pytest.raises(ValueError, match="overlaps"):
        render([("▁hello", 0.1), ("▁world", 0.2)], 1.0)
    signal = render([("▁hello", 0.1)], 0.5, sample_rate=8000)
    assert signal.dtype == np.float32 and signal.shape == (4000,)
