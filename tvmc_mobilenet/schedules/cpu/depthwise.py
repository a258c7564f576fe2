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

from tvm import s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

from tvmc_mobilenet.schedules.cpu.conv_nhwc import (
    ConvNhwc,
    conv_nhwc_extents,
    find_conv_nhwc,
    inline_around,
    leave_to_this_rule,
    vectorize_innermost,
)
from tvmc_mobilenet.schedules.cpu.vector_unit import VectorUnit, largest_divisor_at_most, vector_unit

#: Largest number of outputs along a row per tile.
MAX_PIXELS_PER_TILE = 8
#: Largest number of channel vectors per tile the search tries.
MAX_VECTORS_PER_TILE = 2


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
    tile_loop = sch.fuse(n, h, w_outer, f_outer)
    if cores > 1:
        sch.parallel(tile_loop)
    for loop in (kh, kw, w_inner, f_vectors):
        sch.unroll(loop)
    if tiles.lanes > 1:
        sch.vectorize(f_lanes)
    if epilogue is not None:
        sch.reverse_compute_at(epilogue, tile_loop, preserve_unit_loops=True)
        vectorize_innermost(sch, epilogue)
    sch.decompose_reduction(conv_block, kh)
    return epilogue


def depthwise_space(target: Target):
    """MetaSchedule custom rule ``(sch, block) -> [sch]`` sampling :func:`schedule_depthwise`."""
    unit = vector_unit(target)
    cores = int(target.attrs.get("num-cores", 1) or 1)

    def apply(sch: s_tir.Schedule, block):
        conv = conv_nhwc_extents(sch, block)
        tiles = DepthwiseTiles(pixels=1, lanes=unit.vector_width(conv.f))
        epilogue = schedule_depthwise(sch, block, conv, tiles, cores, search=True)
        leave_to_this_rule(sch, epilogue, sch.get_sblock("root"))
        return [sch]

    return apply


class Depthwise(ScheduleRule):
    """Default schedule for NHWC depthwise convolution kernels (with their bias + ReLU)."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        found = find_conv_nhwc(sch)
        if found is None or not found[1].is_depthwise:
            return None
        block, conv = found
        cores = int(target.attrs.get("num-cores", 1) or 1)
        schedule_depthwise(sch, block, conv, default_depthwise_tiles(conv, vector_unit(target)), cores)
        return sch
