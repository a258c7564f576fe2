"""Depthwise 3×3 convolution on a CPU, NHWC: vectorised over channels, a row segment per tile.

Each channel is filtered on its own, so the vector lanes run over channels (contiguous in NHWC
for the input, the ``kh×kw×1×C`` weights and the output, for strides 1 and 2 alike). A tile is
``pixels`` outputs along a row × one vector of channels: its accumulators stay in registers
while the ``kh×kw`` window is unrolled, so each weight vector is loaded once per tile and the
overlapping input columns are shared between neighbouring outputs. Padding is not copied: the
zero border is a condition on the loads. Bias + ReLU run on the tile before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir

from tvmc_mobilenet.schedules.cpu.conv_nhwc import NhwcConvRule, finish_tiles
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, inline_around, largest_divisor_at_most
from tvmc_mobilenet.schedules.cpu.vector_unit import VectorUnit

#: Largest number of outputs along a row per tile.
MAX_PIXELS_PER_TILE = 8
#: Largest number of channel vectors per tile the search tries.
MAX_VECTORS_PER_TILE = 2
#: Smaller depthwise convolutions run on one core: about 4 µs of one core's work, less than TVM's
#: parallel launch costs (see conv_dot.MIN_PARALLEL_MACS).
MIN_PARALLEL_MACS = 200_000


@dataclass(frozen=True)
class DepthwiseTiles:
    """``pixels`` outputs along a row × ``lanes`` channels per tile."""

    pixels: int
    lanes: int


def default_depthwise_tiles(conv: ConvNhwc, unit: VectorUnit) -> DepthwiseTiles:
    lanes = unit.vector_width(conv.f)
    # accumulators + one weight + one input register
    pixels = largest_divisor_at_most(conv.w, min(MAX_PIXELS_PER_TILE, unit.registers - 2))
    return DepthwiseTiles(pixels=pixels, lanes=lanes)


def schedule_depthwise(sch: s_tir.Schedule, conv_block, conv: ConvNhwc, tiles: DepthwiseTiles, cores: int, search: bool = False):
    """Schedule the depthwise kernel in ``sch``; with ``search`` the outputs per tile along the row
    and the channel vectors per tile are sampled (MetaSchedule's design space for the kernel).
    Returns the epilogue block (None without one)."""
    epilogue = inline_around(sch, conv_block)
    n, h, w, f, kh, kw, c = sch.get_loops(conv_block)
    f_rest, f_lanes = sch.split(f, factors=[None, tiles.lanes])
    if search:
        w_factors = sch.sample_perfect_tile(w, n=2, max_innermost_factor=MAX_PIXELS_PER_TILE)
        f_factors = sch.sample_perfect_tile(f_rest, n=2, max_innermost_factor=MAX_VECTORS_PER_TILE)
    else:
        w_factors, f_factors = [None, tiles.pixels], [None, 1]
    w_outer, w_inner = sch.split(w, factors=w_factors)
    f_outer, f_vectors = sch.split(f_rest, factors=f_factors)
    sch.reorder(n, h, w_outer, f_outer, kh, kw, c, w_inner, f_vectors, f_lanes)
    cores = cores if conv.macs >= MIN_PARALLEL_MACS else 1
    finish_tiles(sch, conv_block, epilogue, [n, h, w_outer, f_outer], kh, [kh, kw, w_inner, f_vectors], f_lanes, tiles.lanes, cores)
    return epilogue


class Depthwise(NhwcConvRule):
    """Our depthwise kernels: the default schedule (a DLight rule) and the design space."""

    def matches(self, conv: ConvNhwc) -> bool:
        return conv.is_depthwise

    def schedule(self, sch, block, conv, unit, cores, search):
        tiles = DepthwiseTiles(1, unit.vector_width(conv.f)) if search else default_depthwise_tiles(conv, unit)
        return schedule_depthwise(sch, block, conv, tiles, cores, search)
