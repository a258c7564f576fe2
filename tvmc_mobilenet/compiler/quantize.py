"""Post-training static int8 quantization of the built-in MobileNet, as an integer Relax graph.

The scheme (``--quantize int8``), chosen for what the int8 dot-product instructions take (x86
``vpdpbusd`` multiplies unsigned by signed bytes; Arm ``udot``/``sdot`` either):

* weights: symmetric int8 per output channel, ``q = round(w / s_w)`` in [-127, 127] with
  ``s_w = max|w| / 127``, after BatchNorm is folded into the convolution;
* activations: per tensor, from calibration (the largest value seen). The network input is
  symmetric int8; every activation after a ReLU is unsigned (uint8, zero point 0), so all 256
  codes cover [0, max]; the classifier's logits are symmetric int8;
* biases: int32 in the accumulator's scale, ``round(b / (s_x · s_w))``;
* requantization: each convolution's int32 accumulator (bias added) goes to the next layer's uint8
  through one float32 scale per output channel, ``round_half_even(float32(acc) · scale)``, then a
  clamp that is the ReLU (and the ReLU6) — all in the convolution's epilogue, so activations stay
  8-bit from the first convolution to the classifier. This is XNNPACK's "fp32" requantization:
  5 vector instructions per 16 outputs on AVX-512 where a 31-bit fixed-point multiplier needs
  int64 lanes (twice the instructions; the whole network ran 8 % slower with it here);
* global average pooling keeps its input's scale (a rounded integer mean), as TFLite does.

:class:`QuantizedNetwork` holds every integer constant and scale; it builds the Relax module
(:meth:`~QuantizedNetwork.relax_module`) and, independently, executes the same integer graph with
NumPy (:meth:`~QuantizedNetwork.reference`), the reference the build verifies the module against.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tvmc_mobilenet.model.spec import LayerKind, ModelConfig, layer_specs

if TYPE_CHECKING:
    import tvm

INT8_MAX = 127
UINT8_MAX = 255
#: The code type the dense convolutions read (see :meth:`QuantizedNetwork.relax_module`) → what
#: is added to the uint8 activation codes (and to the int8 input codes + 128) to get it.
DENSE_INPUT_OFFSETS = {"uint8": 0, "int8": -128}
#: The first convolution's input channels, padded to one 4-byte group of the dot products.
INPUT_CHANNEL_GROUP = 4
#: The classifier's classes are padded to a multiple of this (the widest dot product's lanes).
CLASSIFIER_CHANNEL_BLOCK = 16


@dataclass(frozen=True)
class Requantize:
    """int32 accumulator (bias added) → 8-bit output, per output channel:
    ``clamp(round_half_even(float32(acc) · scale), low, high)`` in float32, XNNPACK's "fp32"
    requantization. The clamp is the ReLU (or ReLU6)."""

    scale: np.ndarray  # float32, per output channel
    low: int
    high: int

    @classmethod
    def of(cls, real: np.ndarray, low: int, high: int) -> Requantize:
        real = np.asarray(real, dtype=np.float64)
        if np.any(real <= 0) or not np.all(np.isfinite(real)):
            raise ValueError("requantization scales must be positive and finite")
        return cls(real.astype(np.float32), low, high)

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """The module's computation, channel last, as int64 codes: every step is one IEEE float32
        operation (conversion, product, rounding to nearest even), so NumPy and the module agree
        bit for bit."""
        acc = np.asarray(acc)
        if acc.size and (acc.min() < np.iinfo(np.int32).min or acc.max() > np.iinfo(np.int32).max):
            raise ValueError("an accumulator outside int32")
        scaled = np.rint(acc.astype(np.float32) * self.scale)
        return np.clip(scaled, self.low, self.high).astype(np.int64)


def activation_bounds(activation: str, scale: float) -> tuple[int, int]:
    """The uint8 clamp a ReLU (``relu``) or ReLU6 (``relu6``) becomes at output scale ``scale``."""
    if activation == "relu":
        return 0, UINT8_MAX
    if activation == "relu6":
        return 0, int(min(UINT8_MAX, round(6.0 / scale)))
    raise ValueError(f"unknown activation {activation!r}")


@dataclass
class QuantizedConv:
    """One convolution + BatchNorm + ReLU of the network, in integers (weights HWIO)."""

    name: str
    kind: LayerKind
    stride: int
    groups: int
    weight: np.ndarray  # int8, (kh, kw, in/groups, out)
    bias: np.ndarray  # int32, (out,)
    weight_scale: np.ndarray  # float64, (out,)
    input_scale: float
    output_scale: float
    activation: str
    requantize: Requantize
    #: Zero rows and columns around the input: (top, left, bottom, right); None: kernel // 2 on
    #: every side (PyTorch's). TensorFlow's "SAME" for a stride-2 layer pads (0, 0, 1, 1).
    pads: tuple[int, int, int, int] | None = None

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), as Relax's conv2d takes it."""
        if self.pads is not None:
            return tuple(self.pads)
        p = self.weight.shape[0] // 2
        return (p, p, p, p)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """NHWC integers in → NHWC uint8 codes out (as int64), computed exactly in float64 BLAS
        (every partial sum is an integer below 2^53)."""
        acc = _conv_nhwc_exact(x, self.weight, self.stride, self.padding, self.groups)
        return self.requantize.apply(acc + self.bias)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "input_scale": self.input_scale,
            "output_scale": self.output_scale,
            "activation": self.activation,
            "output_range": [self.requantize.low, self.requantize.high],
            "padding": list(self.padding),
            "weight_scales": [float(s) for s in self.weight_scale],
            "requantize_scales": [float(s) for s in self.requantize.scale],
        }


def _conv_nhwc_exact(x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int, int, int], groups: int) -> np.ndarray:
    n, h, width, c = x.shape
    kh, kw, _, f = w.shape
    top, left, bottom, right = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh = (h + top + bottom - kh) // stride + 1
    ow = (width + left + right - kw) // stride + 1
    acc = np.zeros((n, oh, ow, f), dtype=np.float64)
    wf = w.astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride, :]
            if groups == 1:
                acc += tap @ wf[i, j]
            elif groups == c == f:
                acc += tap * wf[i, j, 0]
            else:
                raise ValueError("only dense and depthwise convolutions are quantized")
    return acc.astype(np.int64)


@dataclass(frozen=True)
class SoftmaxOutput:
    """A model that ends in a softmax whose probabilities are quantized (a TFLite file's int8
    output): the module computes the float softmax of the dequantized logits and rounds it to
    this grid, ``clamp(round(p / scale) + zero_point, -128, 127)``, returned dequantized."""

    scale: float
    zero_point: int

    def apply(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, dtype=np.float32)
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
        q = np.clip(np.rint(p * np.float32(1.0 / self.scale)) + self.zero_point, -128, INT8_MAX)
        return ((q - self.zero_point) * np.float32(self.scale)).astype(np.float32)


@dataclass
class QuantizedNetwork:
    """The whole quantized MobileNet: input quantization, convolutions, pooling, classifier.

    Every code between layers is held without its zero point (``code - zero_point``), so a
    uint8 activation is 0 at a real 0 and the kernels never subtract one; the zero points of a
    file's tensors (TFLite's int8 activations have -128 after a ReLU) are taken out when it is
    read (compiler/tflite_int8.py) and only the input's is applied, where floats are quantized.
    """

    #: The float input the module takes, NCHW (the built-in network) or NHWC (a TFLite file).
    input_shape: tuple[int, ...]
    input_scale: float
    convs: list[QuantizedConv]
    fc_weight: np.ndarray  # int8, (in, classes)
    fc_bias: np.ndarray  # int32, (classes,)
    fc_weight_scale: np.ndarray  # float64, (classes,)
    logits_scale: float
    #: Into the logits' codes less their zero point: its bounds are [-128 - zp, 127 - zp].
    fc_requantize: Requantize
    #: Where the calibration inputs came from (source, samples, …), or which file was read.
    calibration: dict[str, Any] = field(default_factory=dict)
    input_layout: str = "NCHW"
    #: The input's int8 codes are ``clamp(round(x / scale) + zero_point, *input_range)``.
    input_zero_point: int = 0
    input_range: tuple[int, int] = (-INT8_MAX, INT8_MAX)
    #: The global average pool: None keeps its input's scale (a rounded integer mean, ours);
    #: else the sum of the codes is requantized to ``pool_output_scale`` (TFLite's MEAN).
    pool_requantize: Requantize | None = None
    pool_output_scale: float | None = None
    #: A softmax after the classifier (the module's output is then probabilities).
    softmax: SoftmaxOutput | None = None
    #: What the manifest says the scheme is (the built-in quantizer's, or a file's).
    scheme: dict[str, str] = field(default_factory=lambda: dict(BUILTIN_SCHEME))

    @classmethod
    def from_file(cls, path, **fields) -> QuantizedNetwork:
        """A network read from a pre-quantized file (compiler/tflite_int8.py, onnx_qdq.py): its
        int8 input takes the full code range, and the manifest names the file's scheme."""
        from pathlib import Path

        calibration = {"source": "the file's own scales (quantized by its converter)", "file": Path(path).name}
        return cls(calibration=calibration, input_range=(-128, INT8_MAX), scheme=dict(FILE_SCHEME), **fields)

    @property
    def pool_scale(self) -> float:
        return self.pool_output_scale if self.pool_requantize is not None else self.convs[-1].output_scale

    @property
    def input_channels(self) -> int:
        return self.input_shape[1] if self.input_layout == "NCHW" else self.input_shape[3]

    @property
    def output_quantum(self) -> float:
        """One step of the output's grid: the logits' scale, or the softmax's."""
        return self.softmax.scale if self.softmax is not None else self.logits_scale

    # -- the integer graph in NumPy ------------------------------------------------------------

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """float32 input → its int8 codes less the zero point, NHWC (as int64):
        ``clamp(round_half_even(x · (1/s)) + zp, low, high) - zp``, in float32 as the module
        computes it."""
        t = np.asarray(x, dtype=np.float32)
        if self.input_layout == "NCHW":
            t = np.transpose(t, (0, 2, 3, 1))
        q = np.rint(t * np.float32(1.0 / self.input_scale)) + np.float32(self.input_zero_point)
        return np.clip(q, *self.input_range).astype(np.int64) - self.input_zero_point

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The output (float32 logits, or probabilities) of the quantized graph, computed with
        NumPy integers only."""
        codes = self.quantize_input(x)
        for conv in self.convs:
            codes = conv.reference(codes)
        pooled = self._pool_reference(codes)
        acc = (pooled.astype(np.float64) @ self.fc_weight.astype(np.float64)).astype(np.int64) + self.fc_bias
        logits = (self.fc_requantize.apply(acc).astype(np.float32) * np.float32(self.logits_scale)).astype(np.float32)
        return self.softmax.apply(logits) if self.softmax is not None else logits

    def _pool_reference(self, codes: np.ndarray) -> np.ndarray:
        hw = codes.shape[1] * codes.shape[2]
        total = codes.sum(axis=(1, 2))
        if self.pool_requantize is None:
            return (total + hw // 2) // hw
        return self.pool_requantize.apply(total)

    def with_channels_padded(self, multiple: int) -> QuantizedNetwork:
        """The same network with every layer's output channels padded to a multiple of
        ``multiple`` by channels that are always 0 (zero weights, zero bias; the next layer
        reads them with zero weights): the same logits, in vectors the CPU's dot products fill
        (α 0.25's 8-channel first layers on AVX-512 VNNI's 16 lanes)."""
        padded_convs, previous = [], None  # previous: the padded channels of the last layer's output
        for conv in self.convs:
            kh, kw, c_in, c_out = conv.weight.shape
            f = -(-c_out // multiple) * multiple
            depthwise = conv.groups != 1
            weight = np.zeros((kh, kw, c_in if depthwise or previous is None else previous, f), dtype=conv.weight.dtype)
            weight[:, :, :c_in, :c_out] = conv.weight
            rq = conv.requantize
            padded_convs.append(
                replace(
                    conv,
                    groups=f if depthwise else 1,
                    weight=weight,
                    bias=_padded(conv.bias, f, 0),
                    weight_scale=_padded(conv.weight_scale, f, 1.0),
                    requantize=Requantize(_padded(rq.scale, f, 1.0), rq.low, rq.high),
                )
            )
            previous = f
        fc_weight = np.zeros((previous, self.fc_weight.shape[1]), dtype=self.fc_weight.dtype)
        fc_weight[: self.fc_weight.shape[0]] = self.fc_weight
        return replace(self, convs=padded_convs, fc_weight=fc_weight)

    # -- the same graph in Relax ---------------------------------------------------------------

    def relax_module(
        self,
        dense_input: str = "uint8",
        llvm_rounding: bool = True,
        column_dot_lanes: int | None = None,
        channel_multiple: int | None = None,
        column_dot_input: str = "uint8",
    ) -> tvm.IRModule:
        """The integer graph as a Relax module: float32 NCHW input, float32 logits out, NHWC
        activations and HWIO weights in between (the layout our schedules are written for).

        ``dense_input`` is the code type the dense convolutions (the first and the pointwise ones)
        read, as the target's dot-product instruction takes it: ``uint8`` (x86 ``vpdpbusd``,
        unsigned × signed) or ``int8`` (Arm ``sdot``, signed × signed). For ``int8`` the
        depthwise convolutions write their uint8 codes less 128 and each pointwise bias gains
        128 · Σw. Either way every accumulator equals the one :meth:`reference` computes.

        ``llvm_rounding`` (CPU targets) rounds the requantized values to integers with LLVM's
        ``lrint`` (one instruction on x86); without it (CUDA), with ``round`` and a cast.

        ``column_dot_lanes`` (a CPU with a depthwise dot product: schedules/cpu/depthwise_dot.py):
        each 3×3 depthwise convolution whose channels are a multiple of it gets a fourth kernel
        row of zeros and one more row of bottom padding, so that a window column is one 4-byte
        group of the dot product; the sums are the same. With ``column_dot_input="int8"`` (Arm
        ``sdot``, int8 × int8) those convolutions read their uint8 input codes less 128, the
        padding's real zero included (:func:`_depthwise_on_codes_less_128`), and their biases gain
        128 · Σw, so the accumulators are again the same.

        ``channel_multiple`` (the lanes of the CPU's dense dot product): every layer's channels
        padded to a multiple of it (:meth:`with_channels_padded`), the same logits.
        """
        from tvm import relax

        if channel_multiple:
            padded = self.with_channels_padded(channel_multiple)
            return padded.relax_module(dense_input, llvm_rounding, column_dot_lanes, column_dot_input=column_dot_input)

        if dense_input not in DENSE_INPUT_OFFSETS:
            raise ValueError(f"dense_input must be one of {', '.join(DENSE_INPUT_OFFSETS)}, got {dense_input!r}")
        if column_dot_input not in DENSE_INPUT_OFFSETS:
            raise ValueError(f"column_dot_input must be one of {', '.join(DENSE_INPUT_OFFSETS)}, got {column_dot_input!r}")
        offset = DENSE_INPUT_OFFSETS[dense_input]

        def const(array) -> relax.Expr:
            array = np.asarray(array)
            return relax.const(array, str(array.dtype))  # relax.const alone narrows int64 to int32

        def requantize(acc, weight: np.ndarray, bias: np.ndarray, rq: Requantize, dtype: str, shift: int = 0) -> relax.Expr:
            v = relax.op.astype(relax.op.add(acc, const(bias.astype(np.int32))), "float32")
            v = relax.op.multiply(v, const(rq.scale))
            if llvm_rounding and _scaled_fits_int32(weight, bias, rq.scale):
                # Round first, then clamp the int32: on x86 the [0, 255] clamp and the narrowing
                # become vpmaxsd + vpmovusdb instead of vminps + vmaxps + vpmovdb (docs/int8.md)
                v = bb.emit_te(_round_to_int32, bb.emit(v), primfunc_name_hint="round_to_int32")
                v = relax.op.clip(v, rq.low, rq.high)
            elif llvm_rounding:  # half to even, as round is
                v = bb.emit_te(_round_to_int32, bb.emit(relax.op.clip(v, rq.low, rq.high)), primfunc_name_hint="round_to_int32")
            else:
                v = relax.op.astype(relax.op.round(relax.op.clip(v, rq.low, rq.high)), "int32")
            if shift:
                v = relax.op.subtract(v, const(np.int32(shift)))
            return relax.op.astype(v, dtype)

        def dense_feeds(index: int) -> bool:  # conv ``index`` writes what a dense convolution reads
            return index + 1 < len(self.convs) and self.convs[index + 1].groups == 1

        bb = relax.BlockBuilder()
        data = relax.Var("input", relax.TensorType(self.input_shape, "float32"))
        with bb.function("main", [data]):
            with bb.dataflow():
                first = self.convs[0]
                x = bb.emit(self._input_codes(bb, data, first.padding, dense_input, llvm_rounding, const))
                weight, bias = self._first_conv_operands(first, 128 + offset + self.input_zero_point)
                acc = relax.op.nn.conv2d(
                    x, const(weight), strides=first.stride, padding=0, data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"
                )
                x = bb.emit(requantize(acc, weight, bias, first.requantize, "uint8"))
                for index, conv in enumerate(self.convs[1:], start=1):
                    weight, p, bias = conv.weight, conv.padding, conv.bias
                    if conv.groups == 1 and offset:  # reads codes - 128: take -128 · Σw out again
                        bias = _offset_bias(bias, conv.weight, offset)
                    column = conv.groups != 1 and bool(column_dot_lanes) and weight.shape[:2] == (3, 3)
                    column = column and weight.shape[3] % column_dot_lanes == 0
                    if column:
                        weight, p = np.concatenate([weight, np.zeros_like(weight[:1])]), (p[0], p[1], p[2] + 1, p[3])
                    if column and column_dot_input == "int8":  # reads codes - 128: take -128 · Σw out again
                        bias = _offset_bias(bias, conv.weight, DENSE_INPUT_OFFSETS["int8"])
                        acc = bb.emit_te(_depthwise_on_codes_less_128, x, const(weight), conv.stride, p, primfunc_name_hint="conv2d")
                    else:
                        acc = relax.op.nn.conv2d(x, const(weight), strides=conv.stride, padding=p, groups=conv.groups,
                                                 data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32")  # fmt: skip
                    shifted = conv.groups != 1 and dense_feeds(index)
                    x = bb.emit(requantize(acc, conv.weight, bias, conv.requantize, dense_input if shifted else "uint8", -offset if shifted else 0))
                pooled = self._pool(bb, x, llvm_rounding, const)
                if offset:
                    pooled = relax.op.add(pooled, const(np.int32(offset)))
                pooled = bb.emit(relax.op.astype(pooled, dense_input))
                logits = bb.emit(self._classifier(pooled, offset, const, requantize))
                out = relax.op.multiply(relax.op.astype(logits, "float32"), const(np.float32(self.logits_scale)))
                if self.softmax is not None:
                    out = self._softmax_output(bb.emit(out), const)
                out = bb.emit_output(out)
            bb.emit_func_output(out)
        return bb.get()

    def _classifier(self, pooled, offset: int, const, requantize):
        """The classifier as a 1×1 convolution on the 1×1 pooled map, so that it runs on the
        dense kernels' dot products: the classes padded with zero weights to a multiple of
        :data:`CLASSIFIER_CHANNEL_BLOCK` and sliced off again after requantization."""
        from tvm import relax

        features, classes = self.fc_weight.shape
        padded = -(-classes // CLASSIFIER_CHANNEL_BLOCK) * CLASSIFIER_CHANNEL_BLOCK
        weight = np.zeros((1, 1, features, padded), dtype=np.int8)
        weight[0, 0, :, :classes] = self.fc_weight
        bias = np.zeros(padded, dtype=np.int32)
        bias[:classes] = self.fc_bias
        bias = _offset_bias(bias, weight, offset)  # reads pooled codes + offset
        scale = np.ones(padded, dtype=np.float64)
        scale[:classes] = self.fc_requantize.scale
        rq = Requantize.of(scale, self.fc_requantize.low, self.fc_requantize.high)
        batch = self.input_shape[0]
        x = relax.op.reshape(pooled, (batch, 1, 1, features))
        acc = relax.op.nn.conv2d(x, const(weight), data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32")
        fits_int8 = -128 <= rq.low and rq.high <= INT8_MAX  # a file's logits zero point moves the bounds
        logits = relax.op.reshape(requantize(acc, weight, bias, rq, "int8" if fits_int8 else "int32"), (batch, padded))
        return relax.op.strided_slice(logits, axes=[1], begin=[0], end=[classes])

    def _input_codes(self, bb, data, padding: tuple[int, int, int, int], dense_input: str, llvm_rounding: bool, const):
        """The input as the first convolution reads it: NHWC int8 codes (+ 128 as uint8 where the
        dense convolutions read uint8), padded with the code of a real 0 by ``padding`` (top,
        left, bottom, right) and to a fourth channel, so that each pixel is one 4-byte group of
        the dot-product instructions."""
        from tvm import relax

        shift = 128 + DENSE_INPUT_OFFSETS[dense_input]  # int8 code → the dense type's: +128 to uint8
        zero = self.input_zero_point + shift  # the code of a real 0
        x = relax.op.permute_dims(data, [0, 2, 3, 1]) if self.input_layout == "NCHW" else data
        x = relax.op.multiply(x, const(np.float32(1.0 / self.input_scale)))
        if llvm_rounding:
            # Clamp the float to the codes' range less the zero point (integers, so clamping before
            # rounding is the same), round with one instruction (lrint, half to even), add the zero
            # point and the shift as int32: 1.2× faster than round, float adds and a float clamp
            # (a 128×128×3 input: 7.9 → 6.6 µs on one Zen 4 core, 4.9 → 4.2 µs on two; docs/int8.md).
            low, high = self.input_range
            x = relax.op.clip(x, low - self.input_zero_point, high - self.input_zero_point)
            x = bb.emit_te(_round_to_int32, bb.emit(x), primfunc_name_hint="round_to_int32")
            if self.input_zero_point + shift:
                x = relax.op.add(x, const(np.int32(self.input_zero_point + shift)))
        else:
            x = relax.op.round(x)  # half to even
            if self.input_zero_point:
                x = relax.op.add(x, const(np.float32(self.input_zero_point)))
            x = relax.op.clip(x, *self.input_range)
            if shift:
                x = relax.op.add(x, const(np.float32(shift)))
        x = relax.op.astype(x, dense_input)
        top, left, bottom, right = padding
        pad = [0, 0, top, bottom, left, right, 0, INPUT_CHANNEL_GROUP - self.input_channels]
        return relax.op.nn.pad(x, pad, pad_value=zero)

    def _pool(self, bb, x, llvm_rounding: bool, const):
        """The global average pool of the last convolution's uint8 codes, as int32: a rounded
        integer mean (half up) in the same scale, or the sum requantized to the pool's own
        scale (:attr:`pool_requantize`)."""
        from tvm import relax

        hw = int(x.ty.shape[1]) * int(x.ty.shape[2])
        total = relax.op.sum(relax.op.astype(x, "int32"), axis=[1, 2])
        if self.pool_requantize is None:
            return relax.op.floor_divide(relax.op.add(total, const(np.int32(hw // 2))), const(np.int32(hw)))
        rq = self.pool_requantize
        v = relax.op.clip(relax.op.multiply(relax.op.astype(total, "float32"), const(rq.scale)), rq.low, rq.high)
        if llvm_rounding:
            return bb.emit_te(_round_to_int32, bb.emit(v), primfunc_name_hint="round_to_int32")
        return relax.op.astype(relax.op.round(v), "int32")

    def _softmax_output(self, logits, const):
        """The softmax of the float logits on the file's output grid, dequantized (see
        :class:`SoftmaxOutput`)."""
        from tvm import relax

        out = self.softmax
        q = relax.op.round(relax.op.multiply(relax.op.nn.softmax(logits, axis=-1), const(np.float32(1.0 / out.scale))))
        q = relax.op.clip(relax.op.add(q, const(np.float32(out.zero_point))), -128, INT8_MAX)
        return relax.op.multiply(relax.op.subtract(q, const(np.float32(out.zero_point))), const(np.float32(out.scale)))

    @staticmethod
    def _first_conv_operands(conv: QuantizedConv, input_offset: int) -> tuple[np.ndarray, np.ndarray]:
        """The first convolution's weights with a zero fourth input channel, and its bias less
        ``input_offset`` · Σw, which takes the input's offset out again: the accumulators equal
        those of the int8 convolution (:meth:`reference` computes that one)."""
        kh, kw, c, f = conv.weight.shape
        weight = np.zeros((kh, kw, INPUT_CHANNEL_GROUP, f), dtype=np.int8)
        weight[:, :, :c] = conv.weight
        return weight, _offset_bias(conv.bias, conv.weight, input_offset)

    def to_json(self) -> dict[str, Any]:
        """The manifest's record: the scheme, the calibration and every scale."""
        pool: dict[str, Any] = {"scale": self.pool_scale, "rounding": "round half up of the integer mean"}
        if self.pool_requantize is not None:
            pool["rounding"] = "the sum of the codes requantized: round_half_even(float32(sum) * scale)"
            pool["requantize_scale"] = float(self.pool_requantize.scale)
        return {
            **self.scheme,
            "requantization": "float32 per output channel: round_half_even(float32(acc + bias) * scale), clamped to the ReLU's range",
            "calibration": self.calibration,
            "input": {"scale": self.input_scale, "zero_point": self.input_zero_point, "range": list(self.input_range)},
            "input_scale": self.input_scale,
            "layers": [c.to_json() for c in self.convs],
            "pool": pool,
            "classifier": {
                "input_scale": self.pool_scale,
                "logits_scale": self.logits_scale,
                "weight_scales": [float(s) for s in self.fc_weight_scale],
                "requantize_scales": [float(s) for s in self.fc_requantize.scale],
            },
            "softmax": None if self.softmax is None else {"scale": self.softmax.scale, "zero_point": self.softmax.zero_point},
        }


#: The scheme of a network read from a pre-quantized file (compiler/tflite_int8.py, onnx_qdq.py).
FILE_SCHEME = {
    "scheme": "int8",
    "weights": "the file's: symmetric int8 per output channel",
    "activations": "the file's scales and zero points; codes held less their zero point (uint8 after each ReLU)",
    "bias": "the file's int32 biases",
}
#: The built-in quantizer's scheme, as the manifest records it.
BUILTIN_SCHEME = {
    "scheme": "int8",
    "weights": "symmetric int8 per output channel, BatchNorm folded first",
    "activations": "per tensor: input int8 symmetric, after each ReLU uint8 (zero point 0), logits int8 symmetric",
    "bias": "int32 in the accumulator's scale",
}


def _padded(values: np.ndarray, length: int, fill) -> np.ndarray:
    """``values`` (one per channel) extended to ``length`` with ``fill``."""
    out = np.full(length, fill, dtype=values.dtype)
    out[: len(values)] = values
    return out


def _scaled_fits_int32(weight: np.ndarray, bias: np.ndarray, scale: np.ndarray) -> bool:
    """Whether every ``(acc + bias) · scale`` of a convolution is below 2^31 in magnitude for any
    8-bit input (|code| ≤ 255), so that it can be rounded to int32 before it is clamped: the
    result is then the same as clamping first (the bounds are integers)."""
    reach = np.abs(weight.astype(np.int64)).reshape(-1, weight.shape[-1]).sum(axis=0) * 255 + np.abs(bias.astype(np.int64))
    return float(np.max(reach * scale.astype(np.float64))) < 2.0**31 * 0.999


def _depthwise_on_codes_less_128(data, weight, stride: int, padding: tuple[int, int, int, int]):
    """TE: the NHWC depthwise convolution of uint8 codes ``data`` as int8 codes less 128 (their
    padding, code 0 — the real zero —, as -128) with HWIO int8 ``weight``, into int32: for Arm's
    ``sdot``, which multiplies int8 by int8 (schedules/cpu/depthwise_dot.py). The blocks are those
    TOPI's grouped convolution makes (``PaddedInput``, ``group_conv2d_nhwc``, one input channel
    per group), so our schedules and task kinds see a depthwise convolution."""
    from tvm import te, tirx

    n, h, w, c = (int(d) for d in data.shape)
    kh, kw, _, f = (int(d) for d in weight.shape)
    top, left, bottom, right = padding
    padded_h, padded_w = h + top + bottom, w + left + right

    def padded(b, y, x, ch):
        inside = tirx.all(y >= top, y < h + top, x >= left, x < w + left)
        code = (data[b, y - top, x - left, ch] - tirx.const(128, "uint8")).astype("int8")  # mod 256: the byte's top bit flipped
        return tirx.if_then_else(inside, code, tirx.const(-128, "int8"))

    pad = te.compute((n, padded_h, padded_w, c), padded, name="PaddedInput")
    ry, rx, rc = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx"), te.reduce_axis((0, 1), "rc")
    return te.compute(
        (n, (padded_h - kh) // stride + 1, (padded_w - kw) // stride + 1, f),
        lambda b, y, x, ch: te.sum(
            pad[b, y * stride + ry, x * stride + rx, ch + rc].astype("int32") * weight[ry, rx, rc, ch].astype("int32"), axis=[ry, rx, rc]
        ),
        name="group_conv2d_nhwc",
    )


def _round_to_int32(x):
    """TE: float32 → int32 rounded half to even, as one instruction where LLVM has one
    (``llvm.lrint``: x86 ``vcvtps2dq`` in the default rounding mode; AArch64 ``frintx`` +
    ``fcvtzs``). The requantization clamps before it, so every value is in range; ``round`` then
    a truncating cast took two instructions on x86."""
    from tvm import te, tirx

    return te.compute(x.shape, lambda *i: tirx.call_llvm_pure_intrin("int32", "llvm.lrint", x(*i)), name="round_to_int32")


def _offset_bias(bias: np.ndarray, weight: np.ndarray, offset: int) -> np.ndarray:
    """The int32 bias of a convolution whose input codes are shifted by ``offset``: less
    ``offset`` · Σw per output channel (HWIO weights), so its accumulators stay those of the
    unshifted codes."""
    return (bias.astype(np.int64) - offset * weight.astype(np.int64).sum(axis=(0, 1, 2))).astype(np.int32)


# -- quantizing a PyTorch MobileNet ----------------------------------------------------------------


def _weight_codes(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per slice along ``axis``: (codes, scales)."""
    other = tuple(i for i in range(weight.ndim) if i != axis)
    largest = np.max(np.abs(weight), axis=other)
    scale = np.where(largest > 0, largest, 1.0) / INT8_MAX
    shape = [1] * weight.ndim
    shape[axis] = -1
    codes = np.clip(np.round(weight / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return codes, scale


def _bias_codes(bias: np.ndarray, accumulator_scale: np.ndarray) -> np.ndarray:
    limit = np.iinfo(np.int32)
    return np.clip(np.round(bias / accumulator_scale), limit.min, limit.max).astype(np.int32)


def _activation_scale(largest: float, levels: int) -> float:
    return max(float(largest), 1e-6) / levels


def quantize_network(net, calibration: np.ndarray, calibration_info: dict[str, Any] | None = None) -> QuantizedNetwork:
    """Quantize a :class:`~tvmc_mobilenet.model.network.MobileNetV1` (eval mode) with activation
    ranges observed on ``calibration`` (float32 NCHW inputs, preprocessed as the model expects)."""
    import torch

    config: ModelConfig = net.config
    specs = [s for s in layer_specs(config) if s.kind in (LayerKind.CONV, LayerKind.DEPTHWISE, LayerKind.POINTWISE)]
    blocks = list(net.features)
    if len(blocks) != len(specs):
        raise ValueError("the network's blocks do not match its layer list")
    ranges = _observe_ranges(net, calibration)
    input_scale = _activation_scale(ranges["input"], INT8_MAX)
    scale_in = input_scale
    convs: list[QuantizedConv] = []
    for spec, block, largest in zip(specs, blocks, ranges["blocks"], strict=True):
        conv, bn, relu = block[0], block[1], block[2]
        activation = "relu6" if isinstance(relu, torch.nn.ReLU6) else "relu"
        with torch.no_grad():
            factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = (conv.weight * factor.reshape(-1, 1, 1, 1)).double().numpy()
            bias = (bn.bias - bn.running_mean * factor).double().numpy()
        hwio = np.transpose(weight, (2, 3, 1, 0))
        codes, weight_scale = _weight_codes(hwio, axis=3)
        scale_out = _activation_scale(min(largest, 6.0) if activation == "relu6" else largest, UINT8_MAX)
        low, high = activation_bounds(activation, scale_out)
        convs.append(
            QuantizedConv(
                name=spec.name,
                kind=spec.kind,
                stride=spec.stride,
                groups=conv.groups,
                weight=codes,
                bias=_bias_codes(bias, scale_in * weight_scale),
                weight_scale=weight_scale,
                input_scale=scale_in,
                output_scale=scale_out,
                activation=activation,
                requantize=Requantize.of(scale_in * weight_scale / scale_out, low, high),
            )
        )
        scale_in = scale_out
    with torch.no_grad():
        fc_weight = net.fc.weight.double().numpy().T  # (in, classes)
        fc_bias = net.fc.bias.double().numpy()
    fc_codes, fc_scale = _weight_codes(fc_weight, axis=1)
    logits_scale = _activation_scale(ranges["logits"], INT8_MAX)
    return QuantizedNetwork(
        input_shape=tuple(config.input_shape),
        input_scale=input_scale,
        convs=convs,
        fc_weight=fc_codes,
        fc_bias=_bias_codes(fc_bias, scale_in * fc_scale),
        fc_weight_scale=fc_scale,
        logits_scale=logits_scale,
        fc_requantize=Requantize.of(scale_in * fc_scale / logits_scale, -INT8_MAX, INT8_MAX),
        calibration=dict(calibration_info or {}),
    )


def _observe_ranges(net, calibration: np.ndarray, batch: int = 8) -> dict[str, Any]:
    """The largest |input|, the largest output of each conv block (after its ReLU) and the
    largest |logit| over the calibration inputs."""
    import torch

    blocks = list(net.features)
    largest = [0.0] * len(blocks)
    hooks = [
        block.register_forward_hook(lambda _m, _i, out, index=index: largest.__setitem__(index, max(largest[index], float(out.max()))))
        for index, block in enumerate(blocks)
    ]
    input_max = logits_max = 0.0
    try:
        with torch.no_grad():
            for start in range(0, len(calibration), batch):
                x = torch.from_numpy(np.ascontiguousarray(calibration[start : start + batch], dtype=np.float32))
                input_max = max(input_max, float(x.abs().max()))
                logits_max = max(logits_max, float(net(x).abs().max()))
    finally:
        for hook in hooks:
            hook.remove()
    return {"input": input_max, "blocks": largest, "logits": logits_max}


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``approximation`` against ``reference``, in dB."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((np.asarray(approximation, dtype=np.float64) - reference) ** 2))
    signal = float(np.sum(reference**2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)
