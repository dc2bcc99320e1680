"""A tiny, deterministic stand-in for Parakeet TDT 0.6B in istupakov's ONNX file layout.

Why: the real model is 600 MB, slow on two cores and its transcripts of synthetic audio are unknowable, so
tests could only check that *some* text came back. This model is a few kilobytes, builds in milliseconds from
`onnx.helper` and numpy alone, and is loaded by the real `onnx_asr.load_model("nemo-parakeet-tdt-0.6b-v3", dir,
quantization="int8")`: the real file resolution, log-mel preprocessing, TDT greedy loop and timestamp arithmetic
all run over it, and what comes out is known exactly.

The "language": every non-blank token is a tone (`FREQS[piece]`). `render` draws a burst of that tone wherever
a piece should be said; the model emits the piece at the encoder frame where its burst starts, so transcripts
and token timestamps (frame index * 0.08 s, as onnx-asr computes them) follow from the pieces' start times.

How the encoder hears a tone. onnx-asr normalises every mel bin over the utterance (zero mean, unit variance)
before the encoder sees it, so absolute levels are gone and every threshold must be relative:

* a band signal per token: the mean of the few mel bins the tone drives (picked from the slaney mel filterbank
  the preprocessor uses);
* "active" frames: the band is above half of its own maximum over the utterance *and* flat: it moved less than
  1 % of its range (maximum - minimum over the utterance) since the previous frame. A steady tone holds its
  level to a fraction of that, while noise jitters by several percent frame to frame, so the flatness test is
  what rejects noise (and speech, clicks, a noise floor starting after digital silence);
* an onset: at least `_SUSTAIN` consecutive active frames (60 ms) after at least `_REARM` quiet ones, which
  also keeps a one-frame dip inside a burst from repeating its token;
* exclusivity: an onset is dropped when another band starts within 30 ms. A tone starts one band; a broadband
  event (a click, noise starting after digital silence) starts all of them at once;
* the 10 ms onset track is max-pooled by 8 into 80 ms encoder frames, with the pooling window shifted so that
  the reported frame is the one nearest the burst start (the detector fires 20-30 ms after it).

The decoder/joint is the TDT head: token logit 10 where its onset fires, blank logit 5 everywhere, and the
duration head always picks 1, so every encoder frame is decoded exactly once and states pass through.

Why `render` adds a noise floor: the preprocessor's Hann window leaks every tone into every other band, at
-80 dB or so. Over digital silence even that leak is an exact two-level on/off pattern, and per-bin
normalisation stretches it to look like the band's own tone: the file would be ambiguous. A -40 dBFS white
floor (`NOISE_FLOOR`) buries the leak in noise, which the flatness test then ignores.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB: list[str] = ["▁hello", "▁world", "▁bon", "jour", "▁the", "▁cat", ".", ",", "?"]
# 375 Hz apart, 400 Hz..3.4 kHz: inside the telephone band (a tone plus its 10 ms ramps stays below 3.6 kHz,
# so it survives 8 kHz audio), and far enough apart that each band sees the others' leakage below the floor.
FREQS: dict[str, float] = dict(zip(VOCAB, (400.0 + 375.0 * k for k in range(len(VOCAB))), strict=True))
FRAME_SECONDS = 0.08  # one encoder frame: 10 ms hop * subsampling 8, how onnx-asr turns frames into seconds

SAMPLE_RATE = 16000
BURST_SECONDS = 0.2
AMPLITUDE = 0.3
NOISE_FLOOR = 0.01  # rms of the white floor under bursts (-40 dBFS); see the module docstring for why
RAMP_SECONDS = 0.01  # raised-cosine fade in/out, so a burst's edges do not splatter into other bands

_N_MELS = 128
_N_FFT = 512
_WIN_LENGTH = 400
_SUBSAMPLING = 8
_HIDDEN = 8  # prediction-network state size: only its shape is visible to onnx-asr
_DURATIONS = (0, 1, 2, 3, 4)
_BLANK = len(VOCAB)

_BAND_DB = 6.0  # a token's band: the mel bins within 6 dB of the strongest response to its tone
_FLATNESS = 0.01  # of the band's range; noise plateaus after digital silence jitter by ~3 %, tones by < 0.1 %
_MIN_PEAK = 0.3  # a band whose maximum normalised value is below this never moved: constant input
_SUSTAIN = 6  # mel frames (10 ms each) a band must stay active for an onset; bursts need >= ~0.12 s
_REARM = 10  # quiet mel frames needed before a band may start again
_EXCLUSIVE = 3  # mel frames either side within which a second starting band cancels both
_POOL_PADS = (1, 6)  # mel frames [8t-1, 8t+6] make encoder frame t: recentres the 20-30 ms detection lag


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa's default, which NeMo's filterbank uses)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def _mel_filterbank() -> np.ndarray:
    """The [257, 128] slaney-normalised filterbank of onnx-asr's `nemo128` preprocessor, recomputed.

    Recomputed rather than read from onnx-asr's private data so that the builder depends only on numpy; the
    two agree to 3e-8.
    """
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, _N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), _N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T


def _band_weights() -> np.ndarray:
    """[tokens, 128] averaging weights: the mel bins each token's tone drives hardest.

    Found by pushing one windowed frame of each tone through the preprocessor's window and filterbank, so the
    bands follow the real analysis (Hann leakage, triangle overlap) instead of nominal bin centres.
    """
    filterbank = _mel_filterbank()
    pad = (_N_FFT - _WIN_LENGTH) // 2
    window = np.pad(np.hanning(_WIN_LENGTH), (pad, pad))
    t = np.arange(_N_FFT) / SAMPLE_RATE
    weights = np.zeros((len(VOCAB), _N_MELS), dtype=np.float32)
    for k, piece in enumerate(VOCAB):
        response = (np.abs(np.fft.rfft(np.sin(2 * np.pi * FREQS[piece] * t) * window)) ** 2) @ filterbank
        band = response >= response.max() * 10 ** (-_BAND_DB / 10)
        weights[k, band] = 1.0 / band.sum()
    return weights


def _const(name: str, value: np.ndarray | float | list[int], dtype: type = np.float32) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _encoder_model() -> onnx.ModelProto:
    """audio_signal [B,128,T] float32, length [B] int64 -> outputs [B,tokens,T'] onsets, encoded_lengths [B]."""
    k = len(VOCAB)
    inits = [
        _const("band_weights", _band_weights()),
        _const("half", 0.5),
        _const("flatness", _FLATNESS),
        _const("min_peak", _MIN_PEAK),
        _const("masked", -1.0e4),
        _const("unmasked", 1.0e4),
        _const("one_f", 1.0),
        _const("count_limit", 1.5),
        _const("zero_i", 0, np.int64),
        _const("one_i", 1, np.int64),
        _const("two_i", 2, np.int64),
        _const("axis0", [0], np.int64),
        _const("axes12", [1, 2], np.int64),
        _const("axis1", [1], np.int64),
        _const("axis2", [2], np.int64),
        _const("start0", [0], np.int64),
        _const("end1", [1], np.int64),
        _const("end_m1", [-1], np.int64),
        _const("pad_sustain", [0, 0, 0, 0, 0, _SUSTAIN - 1], np.int64),
        _const("pad_rearm", [0, 0, _REARM, 0, 0, 0], np.int64),
        _const("pad_exclusive", [0, 0, _EXCLUSIVE, 0, 0, _EXCLUSIVE], np.int64),
        _const("zero_f", 0.0),
    ]
    n = helper.make_node
    nodes = [
        # Per-token band signal and the valid-frame mask (batches are padded; padding must not count).
        n("MatMul", ["band_weights", "audio_signal"], ["band"]),
        n("Shape", ["audio_signal"], ["n_frames_1d"], start=2, end=3),
        n("Squeeze", ["n_frames_1d", "axis0"], ["n_frames"]),
        n("Range", ["zero_i", "n_frames", "one_i"], ["frame_index"]),
        n("Unsqueeze", ["length", "axes12"], ["length_b11"]),
        n("Less", ["frame_index", "length_b11"], ["valid"]),
        # Relative level: above half of the band's own maximum over the utterance.
        n("Where", ["valid", "band", "masked"], ["band_valid"]),
        n("ReduceMax", ["band_valid"], ["peak"], axes=[2], keepdims=1),
        n("Where", ["valid", "band", "unmasked"], ["band_valid_low"]),
        n("ReduceMin", ["band_valid_low"], ["floor"], axes=[2], keepdims=1),
        n("Sub", ["peak", "floor"], ["span"]),
        n("Mul", ["peak", "half"], ["half_peak"]),
        n("Greater", ["band", "half_peak"], ["high"]),
        n("Greater", ["peak", "min_peak"], ["moved"]),
        # Flatness: |band[t] - band[t-1]| below a small fraction of the band's range.
        n("Slice", ["band", "start0", "end1", "axis2"], ["band_first"]),
        n("Slice", ["band", "start0", "end_m1", "axis2"], ["band_head"]),
        n("Concat", ["band_first", "band_head"], ["band_prev"], axis=2),
        n("Sub", ["band", "band_prev"], ["band_step"]),
        n("Abs", ["band_step"], ["band_jitter"]),
        n("Mul", ["span", "flatness"], ["jitter_limit"]),
        n("Less", ["band_jitter", "jitter_limit"], ["flat"]),
        n("And", ["high", "flat"], ["steady_high"]),
        n("And", ["steady_high", "moved"], ["steady_moved"]),
        n("And", ["steady_moved", "valid"], ["active_b"]),
        n("Cast", ["active_b"], ["active"], to=TensorProto.FLOAT),
        # Sustained: active for _SUSTAIN frames from here (min-pool = 1 - max-pool of the complement).
        n("Sub", ["one_f", "active"], ["idle"]),
        n("Pad", ["idle", "pad_sustain", "one_f"], ["idle_padded"], mode="constant"),
        n("MaxPool", ["idle_padded"], ["idle_ahead"], kernel_shape=[_SUSTAIN], strides=[1]),
        n("Sub", ["one_f", "idle_ahead"], ["sustained"]),
        # Onset: sustained now, not sustained in any of the _REARM previous frames.
        n("Pad", ["sustained", "pad_rearm", "zero_f"], ["sustained_zero_padded"], mode="constant"),
        # A no-op on 0/1 values between the two: ONNX Runtime 1.22-1.24 fuse a zero Pad into the MaxPool after it,
        # then refuse that pool because its padding (the whole window here) is not smaller than its kernel.
        n("Relu", ["sustained_zero_padded"], ["sustained_padded"]),
        n("MaxPool", ["sustained_padded"], ["recent_long"], kernel_shape=[_REARM], strides=[1]),
        n("Slice", ["recent_long", "start0", "n_frames_1d", "axis2"], ["recent"]),
        n("Sub", ["one_f", "recent"], ["fresh"]),
        n("Mul", ["sustained", "fresh"], ["onset"]),
        # Exclusivity: count bands starting within +-_EXCLUSIVE frames; keep onsets that are alone.
        n("Pad", ["onset", "pad_exclusive", "zero_f"], ["onset_padded"], mode="constant"),
        n("MaxPool", ["onset_padded"], ["onset_near"], kernel_shape=[2 * _EXCLUSIVE + 1], strides=[1]),
        n("ReduceSum", ["onset_near", "axis1"], ["starting_bands"], keepdims=1),
        n("Less", ["starting_bands", "count_limit"], ["alone_b"]),
        n("Cast", ["alone_b"], ["alone"], to=TensorProto.FLOAT),
        n("Mul", ["onset", "alone"], ["onset_alone"]),
        # 10 ms -> 80 ms frames; output length ceil(T/8), like three stride-2 convolutions.
        n(
            "MaxPool",
            ["onset_alone"],
            ["outputs"],
            kernel_shape=[_SUBSAMPLING],
            strides=[_SUBSAMPLING],
            pads=list(_POOL_PADS),
        ),
    ]
    lengths = "length"
    for i in range(3):  # NeMo's dw_striding: length -> (length - 1) // 2 + 1, three times
        nodes += [
            n("Sub", [lengths, "one_i"], [f"len_minus_{i}"]),
            n("Div", [f"len_minus_{i}", "two_i"], [f"len_half_{i}"]),
            n("Add", [f"len_half_{i}", "one_i"], [f"len_{i}" if i < 2 else "encoded_lengths"]),
        ]
        lengths = f"len_{i}"
    graph = helper.make_graph(
        nodes,
        "tiny_parakeet_encoder",
        [
            helper.make_tensor_value_info("audio_signal", TensorProto.FLOAT, ["batch", _N_MELS, "time"]),
            helper.make_tensor_value_info("length", TensorProto.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", k, "frames"]),
            helper.make_tensor_value_info("encoded_lengths", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    return _model(graph, "Tone-onset encoder: one channel per token, 1.0 at the frame its tone starts.")


def _decoder_joint_model() -> onnx.ModelProto:
    """The TDT prediction net + joint: token k where its onset fires, else blank; duration always 1."""
    k = len(VOCAB)
    width = k + 1 + len(_DURATIONS)
    projection = np.zeros((k, width), dtype=np.float32)
    projection[:, :k] = 10.0 * np.eye(k, dtype=np.float32)
    bias = np.zeros(width, dtype=np.float32)
    bias[_BLANK] = 5.0
    bias[k + 1 + _DURATIONS.index(1)] = 8.0
    inits = [
        _const("projection", projection),
        _const("bias", bias),
        _const("axis2", [2], np.int64),
        _const("start0", [0], np.int64),
        _const("end2", [2], np.int64),
        _const("axis0", [0], np.int64),
        _const("width", [width], np.int64),
    ]
    n = helper.make_node
    nodes = [
        n("Transpose", ["encoder_outputs"], ["frames"], perm=[0, 2, 1]),
        n("MatMul", ["frames", "projection"], ["projected"]),
        n("Add", ["projected", "bias"], ["logits"]),
        n("Unsqueeze", ["logits", "axis2"], ["logits_u1"]),
        n("Shape", ["frames"], ["frames_shape"]),
        n("Slice", ["frames_shape", "start0", "end2", "axis0"], ["batch_time"]),
        n("Shape", ["targets"], ["target_steps"], start=1, end=2),
        n("Concat", ["batch_time", "target_steps", "width"], ["out_shape"], axis=0),
        n("Expand", ["logits_u1", "out_shape"], ["outputs"]),
        n("Identity", ["target_length"], ["prednet_lengths"]),
        n("Identity", ["input_states_1"], ["output_states_1"]),
        n("Identity", ["input_states_2"], ["output_states_2"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_parakeet_decoder_joint",
        [
            helper.make_tensor_value_info("encoder_outputs", TensorProto.FLOAT, ["batch", k, "frames"]),
            helper.make_tensor_value_info("targets", TensorProto.INT32, ["batch", "steps"]),
            helper.make_tensor_value_info("target_length", TensorProto.INT32, ["batch"]),
            helper.make_tensor_value_info("input_states_1", TensorProto.FLOAT, [2, "batch", _HIDDEN]),
            helper.make_tensor_value_info("input_states_2", TensorProto.FLOAT, [2, "batch", _HIDDEN]),
        ],
        [
            helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", "frames", "steps", width]),
            helper.make_tensor_value_info("prednet_lengths", TensorProto.INT32, ["batch"]),
            helper.make_tensor_value_info("output_states_1", TensorProto.FLOAT, [2, "batch", _HIDDEN]),
            helper.make_tensor_value_info("output_states_2", TensorProto.FLOAT, [2, "batch", _HIDDEN]),
        ],
        inits,
    )
    return _model(graph, "TDT joint: token logits from onsets, blank 5, durations favour 1.")


def _model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="wazo-stt tests/support/tiny_parakeet.py",
        doc_string=doc,
    )
    model.ir_version = 8  # what the real export declares; every onnxruntime we support reads it
    onnx.checker.check_model(model, full_check=True)
    return model


def build_tiny_parakeet(out_dir: Path) -> Path:
    """Write the five files of istupakov's parakeet-tdt-0.6b-v{2,3}-onnx int8 layout into `out_dir`.

    `nemo128.onnx` is onnx-asr's own preprocessor graph, copied so that the directory looks like a download;
    onnx-asr uses its bundled copy either way.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(_encoder_model(), out_dir / "encoder-model.int8.onnx")
    onnx.save(_decoder_joint_model(), out_dir / "decoder_joint-model.int8.onnx")
    lines = [f"{piece} {i}" for i, piece in enumerate(VOCAB)] + [f"<blk> {_BLANK}"]
    (out_dir / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "model_type": "nemo-conformer-tdt",
        "features_size": _N_MELS,
        "subsampling_factor": _SUBSAMPLING,
        "max_tokens_per_step": 10,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
    source = files("onnx_asr.preprocessors").joinpath("data").joinpath("nemo128.onnx")
    with as_file(source) as path:
        shutil.copyfile(path, out_dir / "nemo128.onnx")
    return out_dir


def render(
    pieces: list[tuple[str, float]],
    duration: float,
    sample_rate: int = SAMPLE_RATE,
    burst: float = BURST_SECONDS,
    *,
    amplitude: float = AMPLITUDE,
    noise_floor: float | None = None,
) -> np.ndarray:
    """float32 mono audio in which the tiny model hears `pieces`: a `burst`-long tone of FREQS[piece] from each
    given second, over a deterministic white floor.

    `noise_floor` (rms) defaults to NOISE_FLOOR when there are pieces and to 0 without: the floor only exists to
    mask tone leakage, and `render([], d)` is then true digital silence, which is what silence detection tests
    want. Bursts should last >= 0.15 s with >= 0.1 s between them; overlapping bursts or bursts that do not fit
    in `duration` raise ValueError.
    """
    n_samples = round(duration * sample_rate)
    length = round(burst * sample_rate)
    ramp = round(RAMP_SECONDS * sample_rate)
    if length < 2 * ramp:
        raise ValueError(f"burst {burst} s is shorter than its two {RAMP_SECONDS} s ramps")
    envelope = np.ones(length)
    envelope[:ramp] = np.sin(np.pi / 2 * np.arange(ramp) / ramp) ** 2
    envelope[length - ramp :] = envelope[:ramp][::-1]
    t = np.arange(length) / sample_rate

    if noise_floor is None:
        noise_floor = NOISE_FLOOR if pieces else 0.0
    signal = np.random.default_rng(0).normal(0.0, noise_floor, n_samples) if noise_floor else np.zeros(n_samples)
    busy_until = -1
    for piece, start in sorted(pieces, key=lambda p: p[1]):
        if piece not in FREQS:
            raise KeyError(f"{piece!r} is not in the tiny vocabulary {VOCAB}")
        first = round(start * sample_rate)
        if first < 0 or first + length > n_samples:
            raise ValueError(f"a {burst} s burst of {piece!r} at {start} s does not fit in {duration} s")
        if first < busy_until:
            raise ValueError(f"the burst of {piece!r} at {start} s overlaps the previous one")
        signal[first : first + length] += amplitude * envelope * np.sin(2 * np.pi * FREQS[piece] * t)
        busy_until = first + length
    return signal.astype(np.float32)


_DECODE_SPACE = re.compile(r"\A\s|\s\B|(\s)\b")  # onnx-asr's own join rule (asr._AsrWithDecoding)


def expected_text(pieces: list[str]) -> str:
    """The text onnx-asr makes of these pieces: "▁" is a space, no leading space, none before punctuation."""
    joined = "".join(piece.replace("\u2581", " ") for piece in pieces)
    return _DECODE_SPACE.sub(lambda m: " " if m.group(1) else "", joined)
