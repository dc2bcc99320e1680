"""Parakeet's int8 depthwise convolutions run as float convolutions with the same output (engine/float_convs.py),
from a copy kept beside the model (engine/prepared.py).

The models here are quantized by ONNX Runtime's own ``quantize_dynamic``, the tool that made the istupakov int8
exports, so the graphs rewritten are the pattern the real encoder holds (DynamicQuantizeLinear -> ConvInteger ->
Cast -> Mul); the shapes are Parakeet's, smaller: a 3x3 stride-2 convolution of one channel (its first
subsampling convolution), a depthwise 3x3 and a depthwise 1-D kernel of 9 (every Conformer layer's), and pointwise
ones, which must stay integer.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from tests.support.tiny_parakeet import build_tiny_parakeet, expected_text, render
from wazo_stt.engine.float_convs import float_convs
from wazo_stt.engine.parakeet import ParakeetRecognizer
from wazo_stt.engine.prepared import PREPARED_DIR, RECORD, parakeet_dir

ENCODER = "encoder-model.int8.onnx"


def _conv(name: str, source: str, weight: np.ndarray, **attributes) -> tuple[onnx.NodeProto, TensorProto]:
    return helper.make_node("Conv", [source, f"{name}_w"], [name], name=name, **attributes), numpy_helper.from_array(
        weight.astype(np.float32), f"{name}_w"
    )


def _float_model(rng: np.random.Generator, depthwise_kernel: int = 9) -> onnx.ModelProto:
    """mel [1,1,T,16] -> conv 1->8 3x3/2 -> relu -> depthwise 3x3/2 -> pointwise 8->8 -> [1,8,T/4*4] -> depthwise
    1-D kernel ``depthwise_kernel`` -> pointwise 1-D 8->8."""
    layers = [
        _conv("first", "mel", rng.standard_normal((8, 1, 3, 3)), strides=[2, 2], pads=[1, 1, 1, 1]),
        _conv("dw2d", "first_relu", rng.standard_normal((8, 1, 3, 3)), strides=[2, 2], pads=[1, 1, 1, 1], group=8),
        _conv("pw2d", "dw2d", rng.standard_normal((8, 8, 1, 1))),
        _conv("dw1d", "flat", rng.standard_normal((8, 1, depthwise_kernel)), pads=[4, 4], group=8),
        _conv("pw1d", "dw1d", rng.standard_normal((8, 8, 1))),
    ]
    nodes = [node for node, _ in layers]
    nodes.insert(1, helper.make_node("Relu", ["first"], ["first_relu"]))
    nodes.insert(4, helper.make_node("Reshape", ["pw2d", "flat_shape"], ["flat"]))
    inits = [w for _, w in layers] + [numpy_helper.from_array(np.array([1, 8, -1], np.int64), "flat_shape")]
    graph = helper.make_graph(
        nodes,
        "convs",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, 1, "time", 16])],
        [helper.make_tensor_value_info("pw1d", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the real export declares; every onnxruntime we support reads it
    return model


def _quantized(tmp_path: Path, weight_type: QuantType, depthwise_kernel: int = 9) -> Path:
    source, target = tmp_path / "float.onnx", tmp_path / ENCODER
    onnx.save(_float_model(np.random.default_rng(7), depthwise_kernel), source)
    quantize_dynamic(source, target, weight_type=weight_type)
    return target


def _run(model: onnx.ModelProto | Path, mel: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"mel": mel})[0]


def _ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node if node.op_type in ("Conv", "ConvInteger")]


@pytest.mark.parametrize("weight_type", [QuantType.QUInt8, QuantType.QInt8])
def test_one_channel_per_group_convolutions_give_the_same_output_bit_for_bit(tmp_path, weight_type):
    path = _quantized(tmp_path, weight_type)
    model = onnx.load(path)
    assert _ops(model) == ["ConvInteger"] * 5  # what quantize_dynamic makes of every Conv

    assert float_convs(model) == 3
    onnx.checker.check_model(model)
    # The first, the depthwise 2-D and the depthwise 1-D are float now; the pointwise ones stay integer.
    assert _ops(model) == ["Conv", "Conv", "ConvInteger", "Conv", "ConvInteger"]
    rng = np.random.default_rng(0)
    for frames in (40, 203, 512):
        mel = (rng.standard_normal((1, 1, frames, 16)) * rng.uniform(0.1, 30)).astype(np.float32)
        assert np.array_equal(_run(model, mel), _run(path, mel))


def test_a_convolution_whose_sums_could_be_inexact_in_float_stays_integer(tmp_path):
    # 601 taps of up to 255 * 255: partial sums could pass 2**24, where float32 stops counting every integer.
    model = onnx.load(_quantized(tmp_path, QuantType.QUInt8, depthwise_kernel=601))
    assert float_convs(model) == 2
    assert _ops(model) == ["Conv", "Conv", "ConvInteger", "ConvInteger", "ConvInteger"]


def test_a_model_without_integer_convolutions_is_left_as_is(tmp_path):
    model = _float_model(np.random.default_rng(1))
    before = model.SerializeToString()
    assert float_convs(model) == 0
    assert model.SerializeToString() == before


def _model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "parakeet"
    directory.mkdir()
    _quantized(tmp_path, QuantType.QUInt8).rename(directory / ENCODER)
    for name in ("decoder_joint-model.int8.onnx", "vocab.txt", "config.json"):
        (directory / name).write_text(name)
    return directory


def test_the_copy_is_made_once_and_links_the_other_files(tmp_path):
    directory = _model_dir(tmp_path)
    loaded, rewritten = parakeet_dir(directory, ENCODER)
    assert (loaded, rewritten) == (directory / PREPARED_DIR, 3)
    assert _ops(onnx.load(loaded / ENCODER)) == ["Conv", "Conv", "ConvInteger", "Conv", "ConvInteger"]
    assert (loaded / "vocab.txt").is_symlink() and (loaded / "vocab.txt").read_text() == "vocab.txt"
    assert sorted(p.name for p in loaded.iterdir()) == sorted(
        [ENCODER, RECORD, "decoder_joint-model.int8.onnx", "vocab.txt", "config.json"]
    )

    # The next start loads the copy as it is: nothing is rewritten again.
    made = (loaded / ENCODER).stat().st_mtime_ns
    os.utime(loaded / ENCODER, ns=(made - 10**9, made - 10**9))
    assert parakeet_dir(directory, ENCODER) == (loaded, 3)
    assert (loaded / ENCODER).stat().st_mtime_ns == made - 10**9


def test_a_new_download_is_rewritten_again(tmp_path):
    directory = _model_dir(tmp_path)
    loaded, _ = parakeet_dir(directory, ENCODER)
    (loaded / ENCODER).write_bytes(b"stale")
    source = directory / ENCODER
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert parakeet_dir(directory, ENCODER) == (loaded, 3)
    assert _ops(onnx.load(loaded / ENCODER)) == ["Conv", "Conv", "ConvInteger", "Conv", "ConvInteger"]
    assert json.loads((loaded / RECORD).read_text())["source"]["mtime_ns"] == source.stat().st_mtime_ns


def test_a_model_without_integer_convolutions_gets_no_copy(tmp_path):
    directory = build_tiny_parakeet(tmp_path / "tiny")
    assert parakeet_dir(directory, ENCODER) == (directory, 0)
    assert not (directory / PREPARED_DIR).exists()


def test_where_no_copy_can_be_made_the_original_is_served_with_a_warning(tmp_path, caplog):
    directory = _model_dir(tmp_path)
    (directory / PREPARED_DIR).write_text("a file where the copy's directory should go")
    with caplog.at_level(logging.WARNING):
        assert parakeet_dir(directory, ENCODER) == (directory, 0)
    assert "FLOAT_CONVS=false" in caplog.text and "40% slower" in caplog.text


def test_an_encoder_onnx_cannot_read_is_left_to_the_loader(tmp_path, caplog):
    directory = _model_dir(tmp_path)
    (directory / ENCODER).write_bytes(b"ConvInteger, but not a model")
    with caplog.at_level(logging.WARNING):
        assert parakeet_dir(directory, ENCODER) == (directory, 0)
    assert "could not make its float-convolution copy" in caplog.text


def _with_depthwise_branch(directory: Path) -> None:
    """Give the tiny encoder a real quantize_dynamic depthwise convolution over its input, added to its output
    times zero: the transcript cannot change, but the encoder now holds the pattern the rewrite looks for."""
    path = directory / ENCODER
    model = onnx.load(path)
    final = next(node for node in model.graph.node if "outputs" in node.output)
    final.output[list(final.output).index("outputs")] = "outputs_before_branch"
    weight = numpy_helper.from_array(np.random.default_rng(3).standard_normal((128, 1, 9)).astype(np.float32), "dw")
    model.graph.initializer.extend([weight, numpy_helper.from_array(np.array(0.0, np.float32), "nothing")])
    model.graph.node.extend(
        [
            helper.make_node("Conv", ["audio_signal", "dw"], ["branch"], group=128, pads=[4, 4]),
            helper.make_node("ReduceSum", ["branch"], ["branch_sum"], keepdims=0),
            helper.make_node("Mul", ["branch_sum", "nothing"], ["branch_zero"]),
            helper.make_node("Add", ["outputs_before_branch", "branch_zero"], ["outputs"]),
        ]
    )
    float_path = directory / "with-branch.onnx"
    onnx.save(model, float_path)
    quantize_dynamic(float_path, path, op_types_to_quantize=["Conv"])
    float_path.unlink()


def test_parakeet_loads_the_copy_and_transcribes_the_same(tmp_path):
    directory = build_tiny_parakeet(tmp_path / "tiny")
    _with_depthwise_branch(directory)
    pieces = ["▁hello", "▁world", "."]
    audio = render([(piece, 0.5 + 0.5 * i) for i, piece in enumerate(pieces)], 2.5)

    plain = ParakeetRecognizer(directory, float_convs=False)
    assert (plain.float_convs, ParakeetRecognizer(directory).float_convs) == (0, 1)
    # The original encoder is now unreadable, with its size and time kept: only a recogniser that loads the copy
    # can transcribe.
    source, before = directory / ENCODER, (directory / ENCODER).stat()
    source.write_bytes(bytes(before.st_size))
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    words = ParakeetRecognizer(directory).recognize(audio, None)
    assert " ".join(w.word.strip() for w in words) == expected_text(pieces)
    assert [(w.word, w.start, w.end) for w in words] == [(w.word, w.start, w.end) for w in plain.recognize(audio, None)]
