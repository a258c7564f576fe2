"""A full-integer ``.tflite`` MobileNet (TensorFlow's converter with ``TFLITE_BUILTINS_INT8``) read
into a :class:`~tvmc_mobilenet.compiler.quantize.QuantizedNetwork`, with the file's own integer
weights, biases, scales and zero points, so that it builds onto our int8 kernels rather than
TVM's dequantize → fp32 → quantize lowering of each operator.

What the converter writes, and how it maps:

* ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` with int8 weights (per output channel, zero point 0), an
  int32 bias in the accumulator's scale and a fused ReLU or ReLU6 → :class:`QuantizedConv`. The
  int8 activation codes ``q`` (zero point -128 after a ReLU) become our uint8 codes ``q - zp``,
  which are 0 at a real 0; TensorFlow's ``SAME`` padding becomes explicit (top, left, bottom,
  right) pads, and a ``PAD`` before a ``VALID`` convolution is folded into them;
* ``MEAN`` over height and width → the pool, its sum requantized to the MEAN's own scale;
* the classifier, a 1×1 ``CONV_2D`` on the 1×1 map or ``FULLY_CONNECTED``, with ``RESHAPE`` /
  ``SQUEEZE`` around it, → the classifier; its int8 logits keep their zero point's range;
* an int8 ``SOFTMAX`` last → :class:`SoftmaxOutput`;
* a float interface (``QUANTIZE`` first, ``DEQUANTIZE`` last) or an int8 one: either way the
  module takes float32 NHWC and returns float32, quantizing with the input's scale and zero point.

Requantization is float32, as XNNPACK (LiteRT's CPU delegate) computes it; the build verifies
the module against LiteRT running the same file, within one step of the output's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmc_mobilenet.compiler.quantize import (
    INT8_MAX,
    QuantizedConv,
    QuantizedNetwork,
    Requantize,
    SoftmaxOutput,
    activation_bounds,
)
from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.spec import LayerKind

#: The operators a full-integer MobileNet is read from.
SUPPORTED_OPERATORS = (
    "QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "MEAN", "FULLY_CONNECTED", "RESHAPE", "SQUEEZE", "SOFTMAX", "DEQUANTIZE",
)  # fmt: skip
_FUSED_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}
_INT8, _FLOAT32, _INT32 = 9, 0, 2


@dataclass
class _Tensor:
    index: int
    name: str
    type: int
    shape: tuple[int, ...]
    scales: np.ndarray | None
    zero_points: np.ndarray | None
    data: np.ndarray | None

    @property
    def scale(self) -> float:
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0])


class _Reader:
    def __init__(self, model, path: Path) -> None:
        import tflite
        from tflite.BuiltinOperator import BuiltinOperator

        self.tflite, self.model, self.path = tflite, model, path
        self.graph = model.Subgraphs(0)
        self.op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}

    def fail(self, message: str) -> BadInputError:
        return BadInputError(f"{str(self.path)!r}: {message}")

    def tensor(self, index: int) -> _Tensor:
        t = self.graph.Tensors(index)
        q = t.Quantization()
        scales = zero_points = None
        if q is not None and q.ScaleLength():
            scales, zero_points = q.ScaleAsNumpy().astype(np.float64), q.ZeroPointAsNumpy().astype(np.int64)
        data = None
        buffer = self.model.Buffers(t.Buffer())
        if buffer is not None and buffer.DataLength():
            dtype = {_INT8: np.int8, _INT32: np.int32, _FLOAT32: np.float32}.get(t.Type())
            if dtype is not None:
                data = buffer.DataAsNumpy().view(dtype).reshape([int(d) for d in t.ShapeAsNumpy()])
        name = t.Name().decode(errors="replace")
        return _Tensor(index, name, t.Type(), tuple(int(d) for d in t.ShapeAsNumpy()), scales, zero_points, data)

    def name_of(self, op) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        return self.op_names.get(builtin, f"operator {builtin}")

    def operators(self) -> list[tuple[str, object]]:
        return [(self.name_of(op), op) for op in (self.graph.Operators(i) for i in range(self.graph.OperatorsLength()))]

    def options(self, op, kind):
        table = op.BuiltinOptions()
        opts = kind()
        opts.Init(table.Bytes, table.Pos)
        return opts


def is_integer_tflite(model) -> bool:
    """Whether a TFLite model is full-integer: an int8 input, or a QUANTIZE as its first operator."""
    graph = model.Subgraphs(0)
    if graph.Tensors(graph.Inputs(0)).Type() == _INT8:
        return True
    if graph.OperatorsLength() == 0:
        return False
    code = model.OperatorCodes(graph.Operators(0).OpcodeIndex())
    from tflite.BuiltinOperator import BuiltinOperator

    return max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == BuiltinOperator.QUANTIZE


def read_int8_tflite(model, path: Path) -> QuantizedNetwork:
    """The quantized network of a full-integer TFLite MobileNet (``model``: a parsed
    ``tflite.Model``); anything it cannot map ends in one line naming it."""
    reader = _Reader(model, Path(path))
    ops = reader.operators()
    unknown = sorted({name for name, _ in ops if name not in SUPPORTED_OPERATORS})
    if unknown:
        raise reader.fail(
            f"operators {', '.join(unknown)} cannot be mapped onto the int8 kernels "
            f"(a full-integer MobileNet is read from {', '.join(SUPPORTED_OPERATORS)})"
        )
    graph = reader.graph
    first = reader.tensor(graph.Inputs(0))
    position = 0
    if ops and ops[0][0] == "QUANTIZE":
        if first.type != _FLOAT32:
            raise reader.fail(f"input {first.name!r} is TFLite type {first.type}, not float32 or int8 (a uint8 interface is not read)")
        first = reader.tensor(ops[0][1].Outputs(0))
        position = 1
    if first.type != _INT8 or first.scales is None:
        raise reader.fail(f"input {first.name!r} is not int8 with a scale; a full-integer model has an int8 input or a QUANTIZE first")
    if len(first.shape) != 4:
        raise reader.fail(f"input {first.name!r} has shape {first.shape}; expected an image batch (N, H, W, C)")
    current = first
    convs: list[QuantizedConv] = []
    pending_pad = (0, 0, 0, 0)

    def chained(op, what: str) -> _Tensor:
        if op.Inputs(0) != current.index:
            raise reader.fail(f"{what} does not read the previous operator's output; only a chain of layers (a MobileNet) is read")
        return reader.tensor(op.Outputs(0))

    # the convolutions
    while position < len(ops) and ops[position][0] in ("CONV_2D", "DEPTHWISE_CONV_2D", "PAD"):
        name, op = ops[position]
        if convs and name == "CONV_2D" and _fused_activation(reader, op) is None and current.shape[1:3] == (1, 1):
            break  # the classifier on a 1×1 map (the converter drops a MEAN over one pixel)
        out = chained(op, f"{name} (operator {position})")
        if name == "PAD":
            pending_pad = _pad_operand(reader, op, current)
        else:
            convs.append(_conv(reader, name, op, position, current, out, pending_pad, len(convs)))
            pending_pad = (0, 0, 0, 0)
        current = out
        position += 1
    if not convs:
        raise reader.fail("has no convolution to read")
    if pending_pad != (0, 0, 0, 0):
        raise reader.fail("a PAD is not followed by a convolution")

    # the global average pool (none where the last map is one pixel)
    pool_requantize = pool_output_scale = None
    if position < len(ops) and ops[position][0] == "MEAN":
        op = ops[position][1]
        pooled = chained(op, "MEAN")
        axes = reader.tensor(op.Inputs(1)).data
        if axes is None or sorted(int(a) % 4 for a in np.ravel(axes)) != [1, 2]:
            raise reader.fail("its MEAN does not average over height and width (axes 1 and 2)")
        hw = current.shape[1] * current.shape[2]
        pool_requantize = Requantize.of(np.float64(current.scale / (pooled.scale * hw)), 0, INT8_MAX - pooled.zero_point)
        pool_output_scale = pooled.scale
        current = pooled
        position += 1
    elif current.shape[1:3] != (1, 1):
        found = ops[position][0] if position < len(ops) else "the end of the graph"
        raise reader.fail(f"expected a MEAN over height and width (the global average pool) after the last convolution, found {found}")

    # the classifier, with RESHAPE / SQUEEZE around it
    while position < len(ops) and ops[position][0] in ("RESHAPE", "SQUEEZE"):
        current = chained(ops[position][1], ops[position][0])
        position += 1
    if position >= len(ops) or ops[position][0] not in ("CONV_2D", "FULLY_CONNECTED"):
        raise reader.fail("expected the classifier (a 1×1 CONV_2D or a FULLY_CONNECTED) after the pool")
    name, op = ops[position]
    logits = chained(op, name)
    fc_weight, fc_bias, fc_scale, activation = _classifier(reader, name, op)
    if activation is not None:
        raise reader.fail(f"its classifier ends in a fused {activation}; expected none")
    zp = logits.zero_point
    fc_requantize = Requantize.of(current.scale * fc_scale / logits.scale, -128 - zp, INT8_MAX - zp)
    current = logits
    position += 1
    softmax = None
    while position < len(ops):
        name, op = ops[position]
        out = chained(op, name)
        if name == "SOFTMAX" and softmax is None:
            beta = reader.options(op, reader.tflite.SoftmaxOptions).Beta()
            if beta != 1.0:
                raise reader.fail(f"its SOFTMAX has beta {beta}; only beta 1 is read")
            softmax = SoftmaxOutput(out.scale, out.zero_point)
        elif name == "DEQUANTIZE" and position == len(ops) - 1:
            pass
        elif name not in ("RESHAPE", "SQUEEZE"):
            raise reader.fail(f"{name} after the classifier cannot be mapped onto the int8 kernels")
        current = out
        position += 1
    if graph.OutputsLength() != 1 or graph.Outputs(0) != current.index:
        raise reader.fail("its output is not the classifier's (or its softmax's)")

    input_shape = first.shape
    return QuantizedNetwork.from_file(
        path,
        input_shape=input_shape,
        input_scale=first.scale,
        convs=convs,
        fc_weight=fc_weight,
        fc_bias=fc_bias,
        fc_weight_scale=fc_scale,
        logits_scale=logits.scale,
        fc_requantize=fc_requantize,
        input_layout="NHWC",
        input_zero_point=first.zero_point,
        pool_requantize=pool_requantize,
        pool_output_scale=pool_output_scale,
        softmax=softmax,
    )


def _pad_operand(reader: _Reader, op, current: _Tensor) -> tuple[int, int, int, int]:
    pads = reader.tensor(op.Inputs(1)).data
    if pads is None or pads.shape != (4, 2) or pads[0].any() or pads[3].any():
        raise reader.fail("its PAD pads more than height and width")
    return (int(pads[1, 0]), int(pads[2, 0]), int(pads[1, 1]), int(pads[2, 1]))


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis: (before, after), the extra row after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(reader: _Reader, name: str, op, position: int, x: _Tensor, out: _Tensor, pad: tuple[int, int, int, int], index: int) -> QuantizedConv:
    tfl = reader.tflite
    depthwise = name == "DEPTHWISE_CONV_2D"
    opts = reader.options(op, tfl.DepthwiseConv2DOptions if depthwise else tfl.Conv2DOptions)
    where = f"{name} (operator {position})"
    if opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1:
        raise reader.fail(f"{where} is dilated; only undilated convolutions are read")
    if depthwise and opts.DepthMultiplier() not in (0, 1):
        raise reader.fail(f"{where} has depth multiplier {opts.DepthMultiplier()}; only 1 is read")
    activation = _fused_activation(reader, op, opts)
    if activation in (None, "other"):
        raise reader.fail(f"{where} has no fused ReLU or ReLU6; convolutions between layers must end in one")
    weight_tensor = reader.tensor(op.Inputs(1))
    weight = weight_tensor.data
    if weight is None or weight_tensor.type != _INT8 or weight_tensor.scales is None:
        raise reader.fail(f"{where} has no constant int8 weights")
    if np.any(weight_tensor.zero_points != 0):
        raise reader.fail(f"{where} has asymmetric weights (a zero point other than 0); only symmetric int8 weights are read")
    if x.type != _INT8 or out.type != _INT8 or x.scales is None or out.scales is None:
        raise reader.fail(f"{where} does not take and give int8 tensors")
    if depthwise:
        hwio = np.transpose(weight, (1, 2, 0, 3))  # (1, H, W, C) → (H, W, 1, C)
    else:
        hwio = np.transpose(weight, (1, 2, 3, 0))  # (O, H, W, I) → (H, W, I, O)
    kh, kw, _, channels = hwio.shape
    weight_scale = np.broadcast_to(weight_tensor.scales, (channels,)).astype(np.float64)
    bias = _bias(reader, op, channels, where)
    stride_h, stride_w = opts.StrideH(), opts.StrideW()
    if stride_h != stride_w:
        raise reader.fail(f"{where} has strides {stride_h}×{stride_w}; only equal strides are read")
    if opts.Padding() == tfl.Padding.SAME:
        top, bottom = _same_pads(x.shape[1] + pad[0] + pad[2], kh, stride_h)
        left, right = _same_pads(x.shape[2] + pad[1] + pad[3], kw, stride_w)
        pads = (pad[0] + top, pad[1] + left, pad[2] + bottom, pad[3] + right)
    else:
        pads = pad
    scale_out = out.scale
    low, high = activation_bounds(activation, scale_out)
    zp = out.zero_point
    high = min(high, INT8_MAX - zp)  # the int8 code's range, less the zero point
    kind = LayerKind.DEPTHWISE if depthwise else (LayerKind.POINTWISE if kh == kw == 1 else LayerKind.CONV)
    return QuantizedConv(
        name=f"conv{index}_{kind.value}",
        kind=kind,
        stride=stride_h,
        groups=channels if depthwise else 1,
        weight=np.ascontiguousarray(hwio),
        bias=bias,
        weight_scale=weight_scale,
        input_scale=x.scale,
        output_scale=scale_out,
        activation=activation,
        requantize=Requantize.of(x.scale * weight_scale / scale_out, low, high),
        pads=pads,
    )


def _fused_activation(reader: _Reader, op, opts=None) -> str | None:
    """``relu``, ``relu6``, None (no activation) or ``other``, of a (depthwise) convolution or a
    fully connected layer."""
    if opts is None:
        kind = {"CONV_2D": reader.tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": reader.tflite.DepthwiseConv2DOptions}
        opts = reader.options(op, kind.get(reader.name_of(op), reader.tflite.FullyConnectedOptions))
    return _FUSED_ACTIVATIONS.get(opts.FusedActivationFunction(), "other")


def _bias(reader: _Reader, op, channels: int, where: str) -> np.ndarray:
    if op.InputsLength() < 3 or op.Inputs(2) < 0:
        return np.zeros(channels, dtype=np.int32)
    bias = reader.tensor(op.Inputs(2))
    if bias.data is None or bias.type != _INT32:
        raise reader.fail(f"{where} has no constant int32 bias")
    return np.ascontiguousarray(bias.data.reshape(channels))


def _classifier(reader: _Reader, name: str, op) -> tuple[np.ndarray, np.ndarray, np.ndarray, str | None]:
    """(weights (in, classes) int8, int32 bias, per-class weight scales, fused activation)."""
    weight_tensor = reader.tensor(op.Inputs(1))
    weight = weight_tensor.data
    if weight is None or weight_tensor.type != _INT8 or weight_tensor.scales is None or np.any(weight_tensor.zero_points != 0):
        raise reader.fail(f"its classifier ({name}) has no constant symmetric int8 weights")
    classes = weight.shape[0]
    matrix = weight.reshape(classes, -1).T  # (O, 1, 1, I) or (O, I) → (I, O)
    activation = _fused_activation(reader, op)
    scale = np.broadcast_to(weight_tensor.scales, (classes,)).astype(np.float64)
    return np.ascontiguousarray(matrix), _bias(reader, op, classes, f"its classifier ({name})"), scale, activation
