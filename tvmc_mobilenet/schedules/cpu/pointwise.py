"""Pointwise 1×1 convolution on a CPU: the GEMM ``out[p, f] = Σ_c in[p, c] · W[c, f]`` in NHWC.

With NHWC activations and HWIO weights, one input pixel's channels and one weight row's output
channels are both contiguous, so the micro-kernel is the classic outer product: for each input
channel ``c``, load ``nr`` vectors of ``W[c, f…]``, broadcast ``in[x, c]`` for ``mr`` pixels of
the row, and accumulate into ``mr × nr`` vector registers. The fused bias + ReLU runs on that
register tile before it is stored. Tiles run in parallel; output-channel tiles are the outer
loop so that each weight panel is read once per core, not once per pixel tile.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir

from tvmc_mobilenet.schedules.cpu.conv_nhwc import NhwcConvRule, finish_tiles
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, inline_around, largest_divisor_at_most
from tvmc_mobilenet.schedules.cpu.vector_unit import VectorUnit

#: Largest register tile side tried along a row (pixels per tile).
MAX_PIXELS_PER_TILE = 8
#: Largest number of channel vectors per register tile the search tries.
MAX_VECTORS_PER_TILE = 4
#: Largest number of input channels the search unrolls per step of the reduction.
MAX_CHANNELS_UNROLLED = 4
#: A tile's accumulators are a buffer of their own inside the parallel loop; TVM keeps such a
#: buffer on the stack only below 1 KB (``kMaxStackAlloca``) and otherwise allocates and frees it
#: from its workspace pool at every tile. The default tile stays below.
MAX_STACK_TILE_BYTES = 1023


@dataclass(frozen=True)
class PointwiseTiles:
    """A register tile: ``pixels`` along the output row × ``vectors`` vectors of ``lanes``
    output channels."""

    pixels: int
    vectors: int
    lanes: int

    @property
    def channels(self) -> int:
        return self.vectors * self.lanes


def default_pointwise_tiles(conv: ConvNhwc, unit: VectorUnit) -> PointwiseTiles:
    """The register tile with the most multiply-adds per load that fits the register file.

    ``pixels × vectors`` accumulators plus ``vectors`` weight registers and one broadcast must fit
    in the vector registers, and the accumulators in :data:`MAX_STACK_TILE_BYTES`; among the
    fitting tiles the one with the highest arithmetic intensity ``pixels·vectors / (pixels +
    vectors)`` wins.
    """
    lanes = unit.vector_width(conv.f)
    best, best_score = PointwiseTiles(1, 1, lanes), 0.0
    for vectors in (4, 3, 2, 1):
        if conv.f % (vectors * lanes):
            continue
        limit = min(MAX_PIXELS_PER_TILE, (unit.registers - vectors - 1) // vectors, MAX_STACK_TILE_BYTES // (4 * vectors * lanes))
        pixels = largest_divisor_at_most(conv.w, limit)
        score = pixels * vectors / (pixels + vectors)
        if score > best_score:
            best, best_score = PointwiseTiles(pixels, vectors, lanes), score
    return best


def schedule_pointwise(sch: s_tir.Schedule, conv_block, conv: ConvNhwc, tiles: PointwiseTiles, cores: int, search: bool = False):
    """Schedule the pointwise kernel in ``sch`` (padding, convolution, bias + ReLU epilogue).

    With ``search`` the tile is not fixed but sampled (MetaSchedule's design space for the
    kernel): pixels per tile and vectors per tile as perfect tiles of the row and of the
    channel vectors, and the number of input channels unrolled per step; ``tiles.lanes`` stays
    the vector width. Returns the epilogue block (None without one).
    """
    epilogue = inline_around(sch, conv_block)
    n, h, w, f, kh, kw, c = sch.get_loops(conv_block)
    f_rest, f_lanes = sch.split(f, factors=[None, tiles.lanes])
    if search:
        w_factors = sch.sample_perfect_tile(w, n=2, max_innermost_factor=MAX_PIXELS_PER_TILE)
        f_factors = sch.sample_perfect_tile(f_rest, n=2, max_innermost_factor=MAX_VECTORS_PER_TILE)
        c_factors = sch.sample_perfect_tile(c, n=2, max_innermost_factor=MAX_CHANNELS_UNROLLED)
    else:
        w_factors, f_factors, c_factors = [None, tiles.pixels], [None, tiles.vectors], [None, 1]
    w_outer, w_inner = sch.split(w, factors=w_factors)
    f_outer, f_vectors = sch.split(f_rest, factors=f_factors)
    c_outer, c_inner = sch.split(c, factors=c_factors)
    sch.reorder(f_outer, n, h, w_outer, kh, kw, c_outer, c_inner, w_inner, f_vectors, f_lanes)
    finish_tiles(sch, conv_block, epilogue, [f_outer, n, h, w_outer], kh, [c_inner, w_inner, f_vectors], f_lanes, tiles.lanes, cores)
    return epilogue


class Pointwise(NhwcConvRule):
    """Our pointwise kernels: the default schedule (a DLight rule) and the design space."""

    def matches(self, conv: ConvNhwc) -> bool:
        return conv.is_pointwise

    def schedule(self, sch, block, conv, unit, cores, search):
        tiles = PointwiseTiles(1, 1, unit.vector_width(conv.f)) if search else default_pointwise_tiles(conv, unit)
        return schedule_pointwise(sch, block, conv, tiles, cores, search)
