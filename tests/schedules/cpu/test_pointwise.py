"""Our pointwise 1×1 schedule: it claims the layer, computes it exactly, uses NEON FMAs on rasp4b."""

import numpy as np
import pytest

from tvmc_mobilenet.schedules.nhwc import ConvNhwc
from tvmc_mobilenet.schedules.cpu.pointwise import MAX_STACK_TILE_BYTES, Pointwise, default_pointwise_tiles
from tvmc_mobilenet.schedules.cpu.vector_unit import VectorUnit

from tests.schedules.kernels import HOST, RASP4B, Layer, neon_fmla_count

SHAPES = [
    # (n, c_in, c_out, size): MobileNet's pointwise layers at several α, and awkward ones
    pytest.param(1, 32, 64, 56, id="alpha1-early"),
    pytest.param(1, 256, 256, 7, id="alpha0.25-7x7"),
    pytest.param(1, 8, 16, 32, id="alpha0.25-16-channels-half-an-avx512-vector"),
    pytest.param(1, 24, 48, 20, id="alpha0.75-48-channels"),
    pytest.param(1, 61, 13, 7, id="odd-channels-no-vector-width"),
    pytest.param(2, 16, 32, 12, id="batch2"),
    pytest.param(1, 128, 256, 1, id="1x1-feature-map"),
]


@pytest.mark.parametrize("n, c_in, c_out, size", SHAPES)
def test_pointwise_schedule_claims_the_layer_and_matches_pytorch(n, c_in, c_out, size):
    layer = Layer(n, c_in, c_out, size, kernel=1, stride=1, groups=1)
    assert Pointwise().apply(layer.conv_kernel(), HOST, False) is not None
    np.testing.assert_allclose(layer.run_on_host(), layer.reference(), rtol=1e-4, atol=1e-4)


def test_pointwise_leaves_other_convolutions_alone():
    depthwise = Layer(1, 16, 16, 14, kernel=3, stride=1, groups=16)
    assert Pointwise().apply(depthwise.conv_kernel(), HOST, False) is None


@pytest.mark.parametrize(
    "f, w, unit, expected",
    [
        (1024, 7, VectorUnit(lanes=16, registers=32), (7, 2, 16)),  # AVX-512, 7×7 map: 7 pixels × 2 zmm
        (64, 112, VectorUnit(lanes=4, registers=32), (4, 4, 4)),  # NEON: 4 pixels × 4 q-registers
        (16, 32, VectorUnit(lanes=16, registers=32), (8, 1, 16)),  # α=0.25: one zmm of 16 channels
        (8, 32, VectorUnit(lanes=16, registers=32), (8, 1, 8)),  # 8 channels: half a zmm
        (13, 7, VectorUnit(lanes=8, registers=16), (7, 1, 1)),  # no vector width divides 13: scalar
        # 112×112×64: 4 pixels × 4 zmm would be 1 KB of accumulators, which TVM allocates per tile
        # from its workspace pool; 7 × 2 (896 B) stays on the stack
        (64, 112, VectorUnit(lanes=16, registers=32), (7, 2, 16)),
    ],
)
def test_register_tile_fits_the_register_file(f, w, unit, expected):
    tiles = default_pointwise_tiles(ConvNhwc(n=1, h=w, w=w, f=f, kh=1, kw=1, c=64, in_channels=64), unit)
    assert (tiles.pixels, tiles.vectors, tiles.lanes) == expected
    assert tiles.pixels * tiles.vectors + tiles.vectors + 1 <= unit.registers
    assert 4 * tiles.pixels * tiles.vectors * tiles.lanes <= MAX_STACK_TILE_BYTES


def test_pointwise_on_rasp4b_uses_neon_vector_fmas():
    assembly = Layer(1, 64, 128, 28, kernel=1, stride=1, groups=1).assembly(RASP4B)
    assert neon_fmla_count(assembly) >= 8, "the pointwise kernel for Cortex-A72 has no NEON fmla …4s"
