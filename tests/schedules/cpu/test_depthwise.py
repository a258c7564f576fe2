"""Our depthwise 3×3 schedule: it claims the layer, computes it exactly, uses NEON FMAs on rasp4b."""

import numpy as np
import pytest

from tvmc_mobilenet.schedules.nhwc import ConvNhwc
from tvmc_mobilenet.schedules.cpu.depthwise import Depthwise, default_depthwise_tiles
from tvmc_mobilenet.schedules.cpu.vector_unit import VectorUnit

from tests.schedules.kernels import HOST, RASP4B, Layer, neon_fmla_count

SHAPES = [
    # (n, channels, size, stride)
    pytest.param(1, 32, 112, 1, id="alpha1-first-block"),
    pytest.param(1, 64, 112, 2, id="alpha1-stride2"),
    pytest.param(1, 8, 64, 1, id="alpha0.25-8-channels"),
    pytest.param(1, 24, 28, 2, id="alpha0.75-24-channels-stride2"),
    pytest.param(1, 13, 9, 1, id="odd-channels-odd-size"),
    pytest.param(1, 200, 15, 2, id="odd-size-stride2"),
    pytest.param(2, 16, 8, 1, id="batch2"),
    pytest.param(1, 256, 1, 1, id="1x1-feature-map"),
]


@pytest.mark.parametrize("n, channels, size, stride", SHAPES)
def test_depthwise_schedule_claims_the_layer_and_matches_pytorch(n, channels, size, stride):
    layer = Layer(n, channels, channels, size, kernel=3, stride=stride, groups=channels)
    assert Depthwise().apply(layer.conv_kernel(), HOST, False) is not None
    np.testing.assert_allclose(layer.run_on_host(), layer.reference(), rtol=1e-4, atol=1e-4)


def test_depthwise_leaves_other_convolutions_alone():
    full = Layer(1, 3, 32, 32, kernel=3, stride=2, groups=1)
    assert Depthwise().apply(full.conv_kernel(), HOST, False) is None
    pointwise = Layer(1, 16, 16, 14, kernel=1, stride=1, groups=1)
    assert Depthwise().apply(pointwise.conv_kernel(), HOST, False) is None


@pytest.mark.parametrize(
    "f, w, unit, expected",
    [
        (32, 112, VectorUnit(lanes=16, registers=32), (8, 16)),
        (1024, 7, VectorUnit(lanes=16, registers=32), (7, 16)),
        (8, 56, VectorUnit(lanes=16, registers=32), (8, 8)),  # 8 channels: half a zmm
        (64, 14, VectorUnit(lanes=4, registers=32), (7, 4)),  # NEON
        (13, 9, VectorUnit(lanes=8, registers=16), (3, 1)),  # scalar, 3 outputs of a 9-wide row
    ],
)
def test_depthwise_tile(f, w, unit, expected):
    tiles = default_depthwise_tiles(ConvNhwc(n=1, h=w, w=w, f=f, kh=3, kw=3, c=1, in_channels=f), unit)
    assert (tiles.pixels, tiles.lanes) == expected


def test_depthwise_on_rasp4b_uses_neon_vector_fmas():
    assembly = Layer(1, 64, 64, 28, kernel=3, stride=1, groups=64).assembly(RASP4B)
    assert neon_fmla_count(assembly) >= 9, "the depthwise kernel for Cortex-A72 has no NEON fmla …4s"
