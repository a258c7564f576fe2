"""Post-training static int8 quantization of the built-in MobileNet, as an integer Relax graph.

The scheme (``--quantize int8``), chosen for what the int8 dot-product instructions take (x86
``vpdpbusd`` multiplies unsigned by signed bytes; Arm ``udot``/``sdot`` either):

* weights: symmetric int8 per output channel, ``q = round(w / s_w)`` in [-127, 127] with
  ``s_w = max|w| / 127``, after BatchNorm is folded into the convolution;
* activations: per tensor, from calibration (the largest value seen). The network input is
  symmetric int8; every activation after a ReLU is unsigned (uint8, zero point 0), so all 256
  codes cover [0, max]; the classifier's logits are symmetric int8;
* biases: int32 in the accumulator's scale, ``round(b / (s_x · s_w))``;
* requantization: each convolution's int32 accumulator goes to the next layer's uint8 through one
  fixed-point multiplier and shift per output channel, ``(acc · m + 2^(k-1)) >> k`` with
  ``m`` in [2^30, 2^31), then a clamp that is the ReLU (and the ReLU6) — all in the convolution's
  epilogue, so activations stay 8-bit from the first convolution to the classifier;
* global average pooling keeps its input's scale (a rounded integer mean), as TFLite does.

:class:`QuantizedNetwork` holds every integer constant and scale; it builds the Relax module
(:meth:`~QuantizedNetwork.relax_module`) and, independently, executes the same integer graph with
NumPy (:meth:`~QuantizedNetwork.reference`), the reference the build verifies the module against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tvmc_mobilenet.model.spec import LayerKind, ModelConfig, layer_specs

if TYPE_CHECKING:
    import tvm

#: Bits of the fixed-point multiplier: m in [2^30, 2^31).
MULTIPLIER_BITS = 31
INT8_MAX = 127
UINT8_MAX = 255


def fixed_point(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each positive ``real`` multiplier as ``m · 2^-k`` with an integer ``m`` in [2^30, 2^31) and
    a shift ``k`` ≥ 1: (m, k) as int64 arrays. Relative error ≤ 2^-31."""
    real = np.asarray(real, dtype=np.float64)
    if np.any(real <= 0) or not np.all(np.isfinite(real)):
        raise ValueError("requantization multipliers must be positive and finite")
    fraction, exponent = np.frexp(real)  # real = fraction · 2^exponent, fraction in [0.5, 1)
    m = np.round(fraction * (1 << MULTIPLIER_BITS)).astype(np.int64)
    carry = m == (1 << MULTIPLIER_BITS)  # rounded up to 1.0
    m[carry] >>= 1
    exponent = exponent + carry
    shift = (MULTIPLIER_BITS - exponent).astype(np.int64)
    if np.any(shift < 1) or np.any(shift > 62):
        raise ValueError(f"a requantization multiplier out of range: {real.min():.3g} .. {real.max():.3g}")
    return m, shift


@dataclass(frozen=True)
class Requantize:
    """int32 accumulator → 8-bit output: ``clamp((acc · m + 2^(k-1)) >> k, low, high)`` per channel."""

    multiplier: np.ndarray  # int64, per output channel
    shift: np.ndarray  # int64, per output channel
    low: int
    high: int

    @classmethod
    def of(cls, real: np.ndarray, low: int, high: int) -> Requantize:
        m, k = fixed_point(real)
        return cls(m, k, low, high)

    @property
    def rounding(self) -> np.ndarray:
        return np.left_shift(np.int64(1), self.shift - 1)

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """The integer computation, channel last, on an int64 copy of ``acc`` (NumPy's ``>>`` is
        arithmetic, like the module's: the rounding is half up)."""
        scaled = (acc.astype(np.int64) * self.multiplier + self.rounding) >> self.shift
        return np.clip(scaled, self.low, self.high)


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

    @property
    def padding(self) -> int:
        return self.weight.shape[0] // 2

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
            "weight_scales": [float(s) for s in self.weight_scale],
            "multipliers": [int(m) for m in self.requantize.multiplier],
            "shifts": [int(s) for s in self.requantize.shift],
        }


def _conv_nhwc_exact(x: np.ndarray, w: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    n, h, width, c = x.shape
    kh, kw, _, f = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (width + 2 * pad - kw) // stride + 1
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


@dataclass
class QuantizedNetwork:
    """The whole quantized MobileNet: input quantization, convolutions, pooling, classifier."""

    config: ModelConfig
    input_scale: float
    convs: list[QuantizedConv]
    fc_weight: np.ndarray  # int8, (in, classes)
    fc_bias: np.ndarray  # int32, (classes,)
    fc_weight_scale: np.ndarray  # float64, (classes,)
    logits_scale: float
    fc_requantize: Requantize
    #: Where the calibration inputs came from (source, samples, …).
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def pool_scale(self) -> float:
        return self.convs[-1].output_scale

    # -- the integer graph in NumPy ------------------------------------------------------------

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW → int8 codes NHWC (as int64): ``clamp(floor(x / s + 0.5), -127, 127)``,
        in float32 as the module computes it."""
        t = np.transpose(np.asarray(x, dtype=np.float32), (0, 2, 3, 1))
        q = np.floor(t * np.float32(1.0 / self.input_scale) + np.float32(0.5))
        return np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int64)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The logits (float32) of the quantized graph, computed with NumPy integers only."""
        codes = self.quantize_input(x)
        for conv in self.convs:
            codes = conv.reference(codes)
        hw = codes.shape[1] * codes.shape[2]
        pooled = (codes.sum(axis=(1, 2)) + hw // 2) // hw
        acc = (pooled.astype(np.float64) @ self.fc_weight.astype(np.float64)).astype(np.int64) + self.fc_bias
        logits = self.fc_requantize.apply(acc)
        return (logits.astype(np.float32) * np.float32(self.logits_scale)).astype(np.float32)

    # -- the same graph in Relax ---------------------------------------------------------------

    def relax_module(self) -> tvm.IRModule:
        """The integer graph as a Relax module: float32 NCHW input, float32 logits out, NHWC
        activations and HWIO weights in between (the layout our schedules are written for)."""
        from tvm import relax

        def const(array) -> relax.Expr:
            array = np.asarray(array)
            return relax.const(array, str(array.dtype))  # relax.const alone narrows int64 to int32

        def requantize(acc, bias: np.ndarray, rq: Requantize, dtype: str) -> relax.Expr:
            v = relax.op.astype(relax.op.add(acc, const(bias.astype(np.int32))), "int64")
            v = relax.op.add(relax.op.multiply(v, const(rq.multiplier)), const(rq.rounding))
            v = relax.op.clip(relax.op.right_shift(v, const(rq.shift)), rq.low, rq.high)
            return relax.op.astype(v, dtype)

        bb = relax.BlockBuilder()
        data = relax.Var("input", relax.TensorType(self.config.input_shape, "float32"))
        with bb.function("main", [data]):
            with bb.dataflow():
                x = bb.emit(relax.op.permute_dims(data, [0, 2, 3, 1]))
                x = relax.op.add(relax.op.multiply(x, const(np.float32(1.0 / self.input_scale))), const(np.float32(0.5)))
                x = bb.emit(relax.op.astype(relax.op.clip(relax.op.floor(x), -INT8_MAX, INT8_MAX), "int8"))
                for conv in self.convs:
                    p = conv.padding
                    acc = relax.op.nn.conv2d(x, const(conv.weight), strides=conv.stride, padding=(p, p, p, p), groups=conv.groups,
                                             data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32")  # fmt: skip
                    x = bb.emit(requantize(acc, conv.bias, conv.requantize, "uint8"))
                hw = int(x.ty.shape[1]) * int(x.ty.shape[2])
                total = relax.op.sum(relax.op.astype(x, "int32"), axis=[1, 2])
                pooled = relax.op.floor_divide(relax.op.add(total, const(np.int32(hw // 2))), const(np.int32(hw)))
                pooled = bb.emit(relax.op.astype(pooled, "uint8"))
                acc = relax.op.matmul(pooled, const(self.fc_weight), out_dtype="int32")
                logits = bb.emit(requantize(acc, self.fc_bias, self.fc_requantize, "int8"))
                out = bb.emit_output(relax.op.multiply(relax.op.astype(logits, "float32"), const(np.float32(self.logits_scale))))
            bb.emit_func_output(out)
        return bb.get()

    def to_json(self) -> dict[str, Any]:
        """The manifest's record: the scheme, the calibration and every scale."""
        return {
            "scheme": "int8",
            "weights": "symmetric int8 per output channel, BatchNorm folded first",
            "activations": "per tensor: input int8 symmetric, after each ReLU uint8 (zero point 0), logits int8 symmetric",
            "bias": "int32 in the accumulator's scale",
            "requantization": "fixed point per output channel: (acc * m + 2^(k-1)) >> k, m in [2^30, 2^31), clamped to the ReLU's range",
            "calibration": self.calibration,
            "input_scale": self.input_scale,
            "layers": [c.to_json() for c in self.convs],
            "pool": {"scale": self.pool_scale, "rounding": "round half up of the integer mean"},
            "classifier": {
                "input_scale": self.pool_scale,
                "logits_scale": self.logits_scale,
                "weight_scales": [float(s) for s in self.fc_weight_scale],
                "multipliers": [int(m) for m in self.fc_requantize.multiplier],
                "shifts": [int(s) for s in self.fc_requantize.shift],
            },
        }


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
        config=config,
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
