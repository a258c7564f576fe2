"""int8 dense convolutions on x86 with AVX-512 VNNI: ``vpdpbusd`` register tiles.

They are MobileNet's pointwise 1×1 convolutions, the GEMM ``acc[p, f] += in[p, c] · W[c, f]`` on
uint8 activations and int8 weights (compiler/quantize.py), and its first 3×3 convolution, whose
input the quantizer pads to 4 channels (one 4-byte group per pixel) and to its border, so that
each of the 9 taps is one more step of the same reduction. One ``vpdpbusd`` multiplies 4 consecutive input channels of one pixel
(broadcast to every lane) by a 16 × 4 block of weights and adds the 16 products' sums into 16
int32 accumulators: 64 multiply-adds per instruction, against 16 for an fp32 FMA. The weights are
repacked once, at compile time, from HWIO to ``[kh][kw][f/16][c/4][16][4]`` so that each such block is one
64-byte load (a layout-rewrite block that the build splits out and evaluates on the constant
weights). A register tile is ``pixels`` pixels of an output row × ``vectors`` blocks of 16 output
channels; the requantization epilogue runs on the tile before it is stored.
"""

from __future__ import annotations

from tvm import s_tir
from tvm.target import Target

from tvmc_mobilenet.schedules.cpu.conv_nhwc import NhwcConvRule
from tvmc_mobilenet.schedules.intrinsics import VNNI_INTRIN, register_vnni_intrinsic
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, inline_around, largest_divisor_at_most

#: Output channels per ``vpdpbusd`` and input channels each lane sums.
LANES, GROUP = 16, 4
#: The search's largest tile: pixels along the row, and 16-channel vectors.
MAX_PIXELS, MAX_VECTORS = 14, 8


def has_vnni(target: Target) -> bool:
    from tvm.target import codegen

    return target.kind.name == "llvm" and bool(codegen.target_has_features("avx512vnni", target))


def is_u8_i8_conv(sch: s_tir.Schedule, block) -> bool:
    """Whether the convolution block multiplies uint8 data by int8 weights into int32."""
    stmt = sch.get(block)
    reads = [r.source.dtype for r in stmt.reads]
    return len(reads) == 2 and tuple(reads) == ("uint8", "int8") and stmt.writes[0].source.dtype == "int32"


def default_tile(conv: ConvNhwc) -> tuple[int, int]:
    """(pixels, vectors): 7 pixels × 2 vectors (14 accumulators) where the row allows, which was
    the fastest tile on MobileNet's 14×14 and 7×7 layers here."""
    pixels = 7 if conv.w % 7 == 0 else largest_divisor_at_most(conv.w, 8)
    vectors = 2 if (conv.f // LANES) % 2 == 0 else 1
    return pixels, vectors


def schedule_conv_vnni(sch: s_tir.Schedule, conv_block, conv: ConvNhwc, cores: int, search: bool = False):
    """Schedule the int8 dense convolution in ``sch``; returns its epilogue block (or None)."""
    epilogue = inline_around(sch, conv_block)
    packed = sch.cache_read(conv_block, 1, "global")
    sch.transform_layout(packed, ("write", 0), lambda kh, kw, c, f: (kh, kw, f // LANES, c // GROUP, f % LANES, c % GROUP))
    sch.annotate(packed, "meta_schedule.layout_rewrite_preproc", True)
    n, h, w, f, kh, kw, c = sch.get_loops(conv_block)
    f_blocks, f_lanes = sch.split(f, factors=[None, LANES])
    c_groups, c_lanes = sch.split(c, factors=[None, GROUP])
    if search:
        w_factors = sch.sample_perfect_tile(w, n=2, max_innermost_factor=MAX_PIXELS)
        f_factors = sch.sample_perfect_tile(f_blocks, n=2, max_innermost_factor=MAX_VECTORS)
    else:
        pixels, vectors = default_tile(conv)
        w_factors, f_factors = [None, pixels], [None, vectors]
    w_outer, w_inner = sch.split(w, factors=w_factors)
    f_outer, f_vectors = sch.split(f_blocks, factors=f_factors)
    sch.reorder(f_outer, n, h, w_outer, kh, kw, c_groups, w_inner, f_vectors, f_lanes, c_lanes)
    tile_loop = sch.fuse(f_outer, n, h, w_outer)
    if cores > 1:
        sch.parallel(tile_loop)
    if epilogue is not None:
        sch.reverse_compute_at(epilogue, tile_loop, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(epilogue)[-1])
    init = sch.decompose_reduction(conv_block, kh)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(f_lanes, VNNI_INTRIN)
    sch.unroll(w_inner)
    sch.unroll(f_vectors)
    return epilogue


class ConvVnni(NhwcConvRule):
    """int8 dense convolutions on AVX-512 VNNI: the default schedule and the design space."""

    def __init__(self) -> None:
        super().__init__()
        register_vnni_intrinsic()

    def matches(self, conv: ConvNhwc) -> bool:
        return conv.c == conv.in_channels and conv.f % LANES == 0 and conv.c % GROUP == 0

    def applies(self, sch: s_tir.Schedule, block, conv: ConvNhwc, target: Target) -> bool:
        return self.matches(conv) and has_vnni(target) and is_u8_i8_conv(sch, block)

    def schedule(self, sch, block, conv, unit, cores, search):
        return schedule_conv_vnni(sch, block, conv, cores, search)
