"""A pre-quantized ONNX MobileNet in QDQ form (``QuantizeLinear``/``DequantizeLinear`` around each
operator, as ONNX Runtime's ``quantize_static`` writes it) read into a
:class:`~tvmc_mobilenet.compiler.quantize.QuantizedNetwork`, with the file's integer weights,
biases, scales and zero points, so that it builds onto our int8 kernels rather than TVM's
dequantize → fp32 → quantize lowering of each operator.

The pattern read, each activation a ``Q → DQ`` pair of one scale and zero point:

* ``QuantizeLinear`` of the float input;
* per convolution ``DQ(x) → Conv(DQ(int8 w), DQ(int32 b)) [→ Relu | Clip] → Q(y)``: weights
  symmetric int8 per output channel; the ReLU is the clamp of ``y``'s codes at its zero point
  (``quantize_static`` removes a Relu that the zero point already implies); codes are held less
  their zero point, so a uint8 activation with zero point 0 is our uint8 code as it is;
* ``GlobalAveragePool`` (its sum requantized to its own scale) with ``Flatten``/``Reshape``;
* the classifier, ``Gemm`` / ``MatMul`` or a 1×1 ``Conv``, and optionally a ``Softmax``.

A uint8 tensor's codes are an int8 tensor's + 128 with its zero point + 128, which is how the
input is held. ONNX Runtime fuses the same pattern into its integer kernels (``QLinearConv``, whose
requantization is float32 as ours); the build verifies the module against it running the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tvmc_mobilenet.compiler.quantize import INT8_MAX, QuantizedConv, QuantizedNetwork, Requantize, SoftmaxOutput
from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.spec import LayerKind

#: The operators a QDQ MobileNet is read from.
SUPPORTED_OPERATORS = (
    "QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "Clip", "GlobalAveragePool", "Flatten", "Reshape", "Squeeze", "Gemm", "MatMul", "Softmax",
)  # fmt: skip
_PASS_THROUGH = ("Flatten", "Reshape", "Squeeze")


def is_qdq_onnx(model) -> bool:
    """Whether an ONNX model is quantized in QDQ form (it holds a QuantizeLinear)."""
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


class _Graph:
    def __init__(self, model, path: Path) -> None:
        from onnx import helper, numpy_helper

        self.path = path
        self.helper = helper
        self.constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for node in model.graph.node:  # Constant nodes are constants too
            if node.op_type == "Constant" and node.attribute:
                self.constants[node.output[0]] = numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
        self.nodes = [n for n in model.graph.node if n.op_type != "Constant"]
        self.consumers: dict[str, list] = {}
        self.producer: dict[str, object] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            for name in node.output:
                self.producer[name] = node

    def fail(self, message: str) -> BadInputError:
        return BadInputError(f"{str(self.path)!r}: {message}")

    def attribute(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return self.helper.get_attribute_value(a)
        return default

    def only_consumer(self, tensor: str, what: str):
        users = self.consumers.get(tensor, [])
        if len(users) != 1:
            raise self.fail(f"{what} is read by {len(users)} operators; only a chain of layers (a MobileNet) is read")
        return users[0]

    def qparams(self, node) -> tuple[np.ndarray, np.ndarray, int]:
        """(scale, zero point, axis) of a QuantizeLinear / DequantizeLinear."""
        scale = self.constants.get(node.input[1])
        zero = self.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        if scale is None or zero is None:
            raise self.fail(f"{node.op_type} {node.name!r} has no constant scale and zero point")
        return scale.astype(np.float64), zero, int(self.attribute(node, "axis", 1))

    def dequantized_constant(self, tensor: str, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(integer codes, scales, zero points) of a constant given through a DequantizeLinear."""
        node = self.producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in self.constants:
            raise self.fail(f"{what} is not a quantized constant (a DequantizeLinear of an initializer)")
        scale, zero, _axis = self.qparams(node)
        return self.constants[node.input[0]], scale, zero


class _Activation:
    """A quantized activation: the Q → DQ pair's scale and zero point (int8 terms) and the
    float tensor the next operator reads."""

    def __init__(self, graph: _Graph, q_node, what: str) -> None:
        scale, zero, _axis = graph.qparams(q_node)
        if scale.size != 1:
            raise graph.fail(f"{what} is quantized per channel; activations must have one scale")
        self.scale = float(scale.reshape(()))
        self.int8_zero_point = int(zero.reshape(())) - (128 if zero.dtype == np.uint8 else 0)
        self.unsigned = zero.dtype == np.uint8
        if zero.dtype not in (np.uint8, np.int8):
            raise graph.fail(f"{what} is quantized to {zero.dtype}; only int8 and uint8 are read")
        dq = graph.only_consumer(q_node.output[0], what)
        if dq.op_type != "DequantizeLinear":
            raise graph.fail(f"{what}'s QuantizeLinear is followed by {dq.op_type}, not a DequantizeLinear")
        self.tensor = dq.output[0]

    @property
    def high(self) -> int:
        """The largest code less the zero point."""
        return INT8_MAX - self.int8_zero_point


def read_qdq_onnx(model, path: Path, input_name: str, input_shape: tuple[int, ...]) -> QuantizedNetwork:
    """The quantized network of a QDQ ONNX MobileNet; anything it cannot map ends in one line
    naming it."""
    graph = _Graph(model, Path(path))
    unknown = sorted({n.op_type for n in graph.nodes if n.op_type not in SUPPORTED_OPERATORS})
    if unknown:
        raise graph.fail(
            f"operators {', '.join(unknown)} cannot be mapped onto the int8 kernels "
            f"(a QDQ MobileNet is read from {', '.join(SUPPORTED_OPERATORS)})"
        )
    quantize = graph.only_consumer(input_name, f"input {input_name!r}")
    if quantize.op_type != "QuantizeLinear":
        raise graph.fail(f"input {input_name!r} goes to {quantize.op_type}, not a QuantizeLinear: the first layer is not quantized")
    first = current = _Activation(graph, quantize, f"input {input_name!r}")
    convs: list[QuantizedConv] = []
    node = graph.only_consumer(current.tensor, "the input")
    spatial = tuple(input_shape[2:])
    while node.op_type == "Conv" and not (convs and spatial == (1, 1) and _is_last(graph, node)):
        conv, current, spatial = _conv(graph, node, current, spatial, len(convs))
        convs.append(conv)
        node = graph.only_consumer(current.tensor, conv.name)
    if not convs:
        raise graph.fail("has no quantized convolution to read")
    pool_requantize = pool_scale = None
    if node.op_type == "GlobalAveragePool":
        pooled = _Activation(graph, _quantize_after(graph, node, "GlobalAveragePool"), "the pool's output")
        hw = spatial[0] * spatial[1]
        pool_requantize = Requantize.of(np.float64(current.scale / (pooled.scale * hw)), 0, pooled.high)
        pool_scale, current = pooled.scale, pooled
        node = graph.only_consumer(current.tensor, "the pool")
    elif spatial != (1, 1):
        raise graph.fail(f"expected a GlobalAveragePool after the last convolution, found {node.op_type}")
    while node.op_type in _PASS_THROUGH:
        following = graph.only_consumer(node.output[0], node.op_type)
        if following.op_type == "QuantizeLinear":
            again = _Activation(graph, following, node.op_type)
            if not np.isclose(again.scale, current.scale, rtol=1e-6) or again.int8_zero_point != current.int8_zero_point:
                raise graph.fail(f"its {node.op_type} requantizes the pooled features; only a reshape that keeps them is read")
            current = again
        else:
            current.tensor = node.output[0]
        node = graph.only_consumer(current.tensor, node.op_type)
    if node.op_type not in ("Gemm", "MatMul", "Conv"):
        raise graph.fail(f"expected the classifier (Gemm, MatMul or a 1×1 Conv) after the pool, found {node.op_type}")
    fc_weight, fc_bias, fc_scale = _classifier(graph, node, current)
    logits_q = _quantize_after(graph, node, "the classifier")
    logits = _Activation(graph, logits_q, "the logits")
    low, high = -128 - logits.int8_zero_point, logits.high
    softmax = None
    out = logits.tensor
    following = graph.consumers.get(out, [])
    if following and following[0].op_type == "Softmax":
        if int(graph.attribute(following[0], "axis", -1)) not in (-1, 1):
            raise graph.fail("its Softmax is not over the classes")
        probabilities = _Activation(graph, _quantize_after(graph, following[0], "Softmax"), "the softmax")
        softmax = SoftmaxOutput(probabilities.scale, probabilities.int8_zero_point)
        out = probabilities.tensor
    outputs = [o.name for o in model.graph.output]
    if outputs != [out]:
        raise graph.fail("its output is not the classifier's (or its softmax's) dequantized")
    return QuantizedNetwork.from_file(
        path,
        input_shape=tuple(input_shape),
        input_scale=first.scale,
        convs=convs,
        fc_weight=fc_weight,
        fc_bias=fc_bias,
        fc_weight_scale=fc_scale,
        logits_scale=logits.scale,
        fc_requantize=Requantize.of(current.scale * fc_scale / logits.scale, low, high),
        input_layout="NCHW",
        input_zero_point=first.int8_zero_point,
        pool_requantize=pool_requantize,
        pool_output_scale=pool_scale,
        softmax=softmax,
    )


def _is_last(graph: _Graph, conv) -> bool:
    """Whether a Conv on a 1×1 map is the classifier: after its Q → DQ comes the graph's end, a
    Softmax or a reshape, not another layer."""
    node = graph.only_consumer(conv.output[0], "a convolution")
    if node.op_type != "QuantizeLinear":
        return False
    dq = graph.only_consumer(node.output[0], "a QuantizeLinear")
    following = graph.consumers.get(dq.output[0], [])
    return not following or following[0].op_type in ("Softmax", *_PASS_THROUGH)


def _quantize_after(graph: _Graph, node, what: str):
    q = graph.only_consumer(node.output[0], what)
    if q.op_type != "QuantizeLinear":
        raise graph.fail(f"{what}'s output goes to {q.op_type}, not a QuantizeLinear: the layer is not quantized")
    return q


def _conv(graph: _Graph, node, x: _Activation, spatial: tuple[int, int], index: int):
    where = f"Conv {node.name!r}"
    weight, w_scale, w_zero = graph.dequantized_constant(node.input[1], f"{where}'s weight")
    if weight.dtype != np.int8 or np.any(w_zero != 0):
        raise graph.fail(f"{where} has weights of {weight.dtype} with zero points {np.unique(w_zero)[:3]}; only symmetric int8 weights are read")
    out_channels, in_per_group, kh, kw = weight.shape
    group = int(graph.attribute(node, "group", 1))
    if any(d != 1 for d in graph.attribute(node, "dilations", [1, 1])):
        raise graph.fail(f"{where} is dilated; only undilated convolutions are read")
    strides = list(graph.attribute(node, "strides", [1, 1]))
    if strides[0] != strides[1]:
        raise graph.fail(f"{where} has strides {strides}; only equal strides are read")
    if graph.attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise graph.fail(f"{where} uses auto_pad; only explicit pads are read")
    top, left, bottom, right = list(graph.attribute(node, "pads", [0, 0, 0, 0]))
    bias = np.zeros(out_channels, dtype=np.int32)
    if len(node.input) > 2 and node.input[2]:
        b, _s, _z = graph.dequantized_constant(node.input[2], f"{where}'s bias")
        bias = b.astype(np.int32).reshape(out_channels)
    depthwise = group == out_channels and in_per_group == 1 and group > 1
    if group != 1 and not depthwise:
        raise graph.fail(f"{where} is a grouped convolution ({group} groups); only dense and depthwise ones are read")
    hwio = np.transpose(weight, (2, 3, 1, 0))  # OIHW → HWIO; depthwise (C, 1, kh, kw) → (kh, kw, 1, C)
    w_scale = np.broadcast_to(w_scale.reshape(-1), (out_channels,)).astype(np.float64)
    # what clamps the output: a Relu / Clip, then the output's own codes
    after = graph.only_consumer(node.output[0], where)
    activation, limit, explicit = "relu", None, after.op_type in ("Relu", "Clip")
    if after.op_type == "Clip":
        low, limit = _clip_bounds(graph, after)
        if low != 0:
            raise graph.fail(f"the Clip after {where} does not clamp at 0 (a ReLU or ReLU6)")
        activation = "relu6" if limit == 6.0 else "clip"
    if explicit:
        after = graph.only_consumer(after.output[0], after.op_type)
    if after.op_type != "QuantizeLinear":
        raise graph.fail(f"{where}'s output goes to {after.op_type}, not a QuantizeLinear: the layer is not quantized")
    y = _Activation(graph, after, f"{where}'s output")
    if not explicit and y.int8_zero_point != -128:  # quantize_static drops a Relu that the codes imply
        raise graph.fail(f"{where} has no ReLU and its output codes do not start at 0 (zero point "
                         f"{y.int8_zero_point + (128 if y.unsigned else 0)}): convolutions between layers must end in a ReLU")  # fmt: skip
    high = y.high if limit is None else min(y.high, int(round(limit / y.scale)))
    kind = LayerKind.DEPTHWISE if depthwise else (LayerKind.POINTWISE if kh == kw == 1 else LayerKind.CONV)
    conv = QuantizedConv(
        name=f"conv{index}_{kind.value}",
        kind=kind,
        stride=int(strides[0]),
        groups=out_channels if depthwise else 1,
        weight=np.ascontiguousarray(hwio),
        bias=bias,
        weight_scale=w_scale,
        input_scale=x.scale,
        output_scale=y.scale,
        activation=activation,
        requantize=Requantize.of(x.scale * w_scale / y.scale, 0, high),
        pads=(int(top), int(left), int(bottom), int(right)),
    )
    out_spatial = tuple((s + p0 + p1 - k) // int(strides[0]) + 1 for s, p0, p1, k in zip(spatial, (top, left), (bottom, right), (kh, kw)))
    return conv, y, out_spatial


def _clip_bounds(graph: _Graph, node) -> tuple[float, float]:
    if len(node.input) > 1:  # opset 11+: min and max as inputs
        low = graph.constants.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        high = graph.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return (float(low) if low is not None else -np.inf), (float(high) if high is not None else np.inf)
    return float(graph.attribute(node, "min", -np.inf)), float(graph.attribute(node, "max", np.inf))


def _classifier(graph: _Graph, node, x: _Activation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights (in, classes) int8, int32 bias, per-class weight scales)."""
    where = f"the classifier ({node.op_type})"
    weight, scale, zero = graph.dequantized_constant(node.input[1], f"{where}'s weight")
    if weight.dtype != np.int8 or np.any(zero != 0):
        raise graph.fail(f"{where} has no symmetric int8 weights")
    if node.op_type == "Gemm":
        if graph.attribute(node, "transA", 0) or float(graph.attribute(node, "alpha", 1.0)) != 1.0:
            raise graph.fail(f"{where} transposes its input or scales it")
        matrix = weight.T if graph.attribute(node, "transB", 0) else weight
    elif node.op_type == "MatMul":
        matrix = weight
    else:  # a 1×1 Conv: (classes, in, 1, 1)
        matrix = weight.reshape(weight.shape[0], -1).T
    classes = matrix.shape[1]
    bias = np.zeros(classes, dtype=np.int32)
    if len(node.input) > 2 and node.input[2]:
        b, _s, _z = graph.dequantized_constant(node.input[2], f"{where}'s bias")
        bias = b.astype(np.int32).reshape(classes)
    scale = np.broadcast_to(scale.reshape(-1), (classes,)).astype(np.float64)
    return np.ascontiguousarray(matrix), bias, scale
