"""Run an int8 model's one-channel-per-group convolutions as float convolutions that give the same numbers.

Why: ``quantize_dynamic`` (how the istupakov int8 exports are made) turns every ``Conv`` into ``ConvInteger``,
and ONNX Runtime computes ``ConvInteger`` by im2col and an integer GEMM per group (microsoft/onnxruntime#12206).
For a depthwise convolution (one input channel per group, as in every Conformer layer's convolution module) that
GEMM is a few multiply-adds long, so the overhead is everything: in Parakeet TDT 0.6B's encoder the 24 depthwise
``ConvInteger`` took 14 ms each on a 20 s chunk, a quarter of the encoder's time, where a float depthwise ``Conv``
on the same data takes 0.5 ms (docs/benchmarks.md, "Float convolutions").

Why the numbers do not change: ``ConvInteger`` sums products of integers, ``(x - x_zero) * (w - w_zero)``, each
at most 255 * 255 in size. Where a convolution has one input channel per group, an output sums ``kernel size``
products (9 for Parakeet): every partial sum is an integer far below 2**24, which float32 holds exactly, in any
order of summation. So ``Conv(float(x) - float(x_zero), float(w - w_zero))`` yields exactly the int32 result, already
as the float the original graph's ``Cast`` made of it; the scale and bias that follow are untouched. A convolution
whose sums could pass 2**24 is left alone, and so are the pointwise ones, which the integer GEMM does well.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# float32 represents every integer up to 2**24 exactly: a sum whose terms and partial sums stay within it is exact.
EXACT_LIMIT = 2**24
# Largest |x - x_zero_point| of 8-bit activations, int8 or uint8.
ACTIVATION_RANGE = 255


def float_convs(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place; returns how many ``ConvInteger`` became float ``Conv`` (0: nothing to do)."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    replacements: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    for node in graph.node:
        if node.op_type != "ConvInteger" or node.output[0] in graph_outputs:
            continue
        users = consumers.get(node.output[0], [])
        cast = users[0] if len(users) == 1 else None
        if cast is None or cast.op_type != "Cast" or _cast_target(cast) != TensorProto.FLOAT:
            continue
        weights = _centred_weights(node, initializers)
        if weights is None:
            continue
        weight_name = f"{node.name or node.output[0]}_float_weight"
        graph.initializer.append(numpy_helper.from_array(weights.astype(np.float32), weight_name))
        replacements[id(node)] = _float_conv_nodes(node, weight_name, cast.output[0])
        dropped.add(id(cast))

    if not replacements:
        return 0
    nodes = []
    for node in graph.node:
        if id(node) in replacements:
            nodes.extend(replacements[id(node)])
        elif id(node) not in dropped:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    return len(replacements)


def _cast_target(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _centred_weights(node: onnx.NodeProto, initializers: dict[str, TensorProto]) -> np.ndarray | None:
    """``w - w_zero_point`` as int32, or None where the rewrite would not be exact or would not pay."""
    weight = initializers.get(node.input[1])
    zero_name = node.input[3] if len(node.input) > 3 else ""
    if weight is None or (zero_name and zero_name not in initializers):
        return None
    w = numpy_helper.to_array(weight).astype(np.int32)
    if w.ndim < 3 or w.shape[1] != 1:  # more than one input channel per group: the integer GEMM does well
        return None
    if zero_name:
        zero = numpy_helper.to_array(initializers[zero_name]).astype(np.int32)
        w = w - (zero.reshape((-1,) + (1,) * (w.ndim - 1)) if zero.ndim == 1 else zero)
    terms = int(np.prod(w.shape[1:]))
    if terms * ACTIVATION_RANGE * int(np.abs(w).max(initial=0)) > EXACT_LIMIT:
        return None
    return w


def _float_conv_nodes(node: onnx.NodeProto, weight_name: str, output: str) -> list[onnx.NodeProto]:
    """Cast(x) [- Cast(x_zero_point)] -> Conv, writing the tensor the original Cast wrote."""
    base = node.name or node.output[0]
    x = f"{base}_float_input"
    nodes = [helper.make_node("Cast", [node.input[0]], [x], to=TensorProto.FLOAT, name=x)]
    if len(node.input) > 2 and node.input[2]:
        zero, centred = f"{base}_float_input_zero", f"{base}_float_input_centred"
        nodes.append(helper.make_node("Cast", [node.input[2]], [zero], to=TensorProto.FLOAT, name=zero))
        nodes.append(helper.make_node("Sub", [x, zero], [centred], name=centred))
        x = centred
    conv = helper.make_node("Conv", [x, weight_name], [output], name=f"{base}_float")
    conv.attribute.extend(node.attribute)  # ConvInteger's attributes are Conv's: pads, strides, group, ...
    nodes.append(conv)
    return nodes


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Delete the replaced integer weights one by one: rebuilding the list would copy every weight of the model."""
    used = Counter(name for node in graph.node for name in node.input)
    used.update(o.name for o in graph.output)
    for index in reversed(range(len(graph.initializer))):
        if not used[graph.initializer[index].name]:
            del graph.initializer[index]


def main(argv: list[str]) -> None:
    """``python -m wazo_stt.engine.float_convs SOURCE TARGET``: writes TARGET when anything was rewritten, and
    prints ``{"rewritten": N}``. Run in a child process by engine/prepared.py, so that the server never holds
    the onnx package's copy of a 650 MB model."""
    source, target = argv
    model = onnx.load(source, load_external_data=False)
    # Weights kept beside the file (fp32 exports) would not follow a copy elsewhere; int8 exports have none.
    external = any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
    rewritten = 0 if external else float_convs(model)
    if rewritten:
        onnx.save(model, target)
    print(json.dumps({"rewritten": rewritten}))


if __name__ == "__main__":
    main(sys.argv[1:])
