"""MobileNet v1 as data: the layer list of the paper's Table 1 under α and ρ.

Everything else in the package (the PyTorch network, the analytical cost, the sweep) is derived
from :func:`layer_specs`, so the architecture is written down exactly once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

from tvmc_mobilenet.errors import BadInputError

#: Resolutions the network accepts: multiples of 32 in this range (five stride-2 stages).
MIN_RESOLUTION = 32
MAX_RESOLUTION = 512
BASE_RESOLUTION = 224


class Variant(str, Enum):
    """The paper's network and its two comparison variants."""

    MOBILENET = "mobilenet"  # Table 1
    FULL_CONV = "full-conv"  # Table 4: every separable block replaced by a full 3×3 conv
    SHALLOW = "shallow"  # Table 5: the five 14×14×512 separable blocks removed


class LayerKind(str, Enum):
    CONV = "conv"  # full 3×3 convolution
    DEPTHWISE = "depthwise"  # depthwise 3×3
    POINTWISE = "pointwise"  # 1×1 convolution
    POOL = "pool"  # global average pool
    DENSE = "dense"  # fully connected


@dataclass(frozen=True)
class ModelConfig:
    """What identifies one MobileNet v1 network (weights aside)."""

    alpha: float = 1.0
    resolution: int = BASE_RESOLUTION
    variant: Variant = Variant.MOBILENET
    num_classes: int = 1000
    batch: int = 1

    def __post_init__(self) -> None:
        validate_alpha(self.alpha)
        validate_resolution(self.resolution)
        object.__setattr__(self, "variant", parse_variant(self.variant))
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise BadInputError(f"number of classes must be a positive integer, got {self.num_classes!r}")
        if not isinstance(self.batch, int) or not 1 <= self.batch <= 1024:
            raise BadInputError(f"batch size must be an integer from 1 to 1024, got {self.batch!r}")

    @property
    def rho(self) -> float:
        """The paper's resolution multiplier ρ = resolution / 224."""
        return self.resolution / BASE_RESOLUTION

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, 3, self.resolution, self.resolution)

    @property
    def name(self) -> str:
        """A short name such as ``mobilenet_v1_0.5_160`` (variant appended unless plain)."""
        base = f"mobilenet_v1_{self.alpha:g}_{self.resolution}"
        return base if self.variant is Variant.MOBILENET else f"{base}_{self.variant.value}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["variant"] = self.variant.value
        d["rho"] = self.rho
        return d


def validate_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise BadInputError(f"width multiplier alpha must be a number in (0, 1], got {alpha!r}")
    return float(alpha)


def validate_resolution(resolution: object) -> int:
    ok = (
        isinstance(resolution, int)
        and not isinstance(resolution, bool)
        and MIN_RESOLUTION <= resolution <= MAX_RESOLUTION
        and resolution % 32 == 0
    )
    if not ok:
        raise BadInputError(
            f"resolution must be a multiple of 32 from {MIN_RESOLUTION} to {MAX_RESOLUTION} (e.g. 224, 192, 160, 128), got {resolution!r}"
        )
    return resolution


def parse_variant(variant: object) -> Variant:
    try:
        return Variant(variant)
    except ValueError:
        choices = ", ".join(v.value for v in Variant)
        raise BadInputError(f"unknown variant {variant!r}; choose one of: {choices}") from None


def scale_channels(channels: int, alpha: float) -> int:
    """The paper's thinned channel count: int(c·α), at least 1."""
    return max(1, int(channels * alpha))


@dataclass(frozen=True)
class LayerSpec:
    """One layer with its shapes; ``in_size``/``out_size`` are square spatial sizes."""

    name: str
    kind: LayerKind
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    in_size: int
    out_size: int

    @property
    def mult_adds(self) -> int:
        """Multiply-accumulates of this layer (0 for pooling, as in the paper)."""
        spatial = self.out_size * self.out_size
        if self.kind is LayerKind.DEPTHWISE:
            return self.kernel * self.kernel * self.in_channels * spatial
        if self.kind in (LayerKind.CONV, LayerKind.POINTWISE, LayerKind.DENSE):
            return self.kernel * self.kernel * self.in_channels * self.out_channels * spatial
        return 0

    @property
    def params(self) -> int:
        """Weights without biases and BatchNorm, as the paper counts them."""
        if self.kind is LayerKind.DEPTHWISE:
            return self.kernel * self.kernel * self.in_channels
        if self.kind in (LayerKind.CONV, LayerKind.POINTWISE, LayerKind.DENSE):
            return self.kernel * self.kernel * self.in_channels * self.out_channels
        return 0


# Table 1 after the first conv: (output channels of the 1×1 conv, stride of the depthwise conv).
# The paper's table prints "s2" for the last depthwise layer, but its input and output are both
# 7×7; every implementation (and the paper's own Mult-Add totals) uses stride 1 there.
SEPARABLE_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
FIRST_CONV_CHANNELS = 32
# Indices into SEPARABLE_BLOCKS of the five 14×14×512 blocks that Table 5's shallow net removes.
SHALLOW_REMOVED = frozenset(range(6, 11))


def _conv_out(size: int, stride: int) -> int:
    # 3×3 kernel, padding 1: ceil(size / stride)
    return (size + stride - 1) // stride


def layer_specs(config: ModelConfig) -> list[LayerSpec]:
    """The layers of the network in execution order."""
    a = config.alpha
    size = config.resolution
    layers: list[LayerSpec] = []
    channels = scale_channels(FIRST_CONV_CHANNELS, a)
    out = _conv_out(size, 2)
    layers.append(LayerSpec("conv0", LayerKind.CONV, 3, channels, 3, 2, size, out))
    size = out
    for i, (out_c, stride) in enumerate(SEPARABLE_BLOCKS, start=1):
        if config.variant is Variant.SHALLOW and (i - 1) in SHALLOW_REMOVED:
            continue
        out_c = scale_channels(out_c, a)
        out = _conv_out(size, stride)
        if config.variant is Variant.FULL_CONV:
            layers.append(LayerSpec(f"conv{i}", LayerKind.CONV, channels, out_c, 3, stride, size, out))
        else:
            layers.append(LayerSpec(f"dw{i}", LayerKind.DEPTHWISE, channels, channels, 3, stride, size, out))
            layers.append(LayerSpec(f"pw{i}", LayerKind.POINTWISE, channels, out_c, 1, 1, out, out))
        channels, size = out_c, out
    layers.append(LayerSpec("pool", LayerKind.POOL, channels, channels, size, 1, size, 1))
    layers.append(LayerSpec("fc", LayerKind.DENSE, channels, config.num_classes, 1, 1, 1, 1))
    return layers
