"""int8 dense convolutions on CPUs with a dot-product instruction: register tiles of it.

The instructions: x86's AVX-512 VNNI ``vpdpbusd`` (uint8 × int8, 16 int32 lanes) and Arm's
dotprod ``sdot`` (int8 × int8, 4 lanes; Cortex-A55, A76 and later). Each multiplies 4
consecutive input channels of one pixel (broadcast to every lane) by a lanes × 4 block of weights
and adds each lane's 4 products into its int32 accumulator: 4 multiply-adds per lane and
instruction, against 1 for a float FMA.

The kernels are MobileNet's pointwise 1×1 convolutions, the GEMM ``acc[p, f] += in[p, c] · W[c, f]``
(compiler/quantize.py writes their inputs in the operand type the target's instruction takes),
and its first 3×3 convolution, whose input the quantizer pads to 4 channels (one 4-byte group per
pixel) and to its border, so that each of the 9 taps is one more step of the same reduction.

The weights are repacked once, at compile time, from HWIO to ``[kh][kw][f/lanes][c/4][lanes][4]``
so that each block is one vector load (a layout-rewrite block that the build splits out and
evaluates on the constant weights). A register tile is ``pixels`` pixels of an output row ×
``vectors`` blocks of ``lanes`` output channels; the requantization epilogue runs on the tile
before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir
from tvm.target import Target

from tvmc_mobilenet.schedules.cpu.conv_nhwc import NhwcConvRule
from tvmc_mobilenet.schedules.intrinsics import SDOT_INTRIN, VNNI_INTRIN, register_cpu_tensor_intrinsics, register_vnni_intrinsic
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, inline_around, largest_divisor_at_most

#: Input channels each lane of a dot-product instruction sums.
GROUP = 4
#: The search's largest number of pixels along the row per tile.
MAX_PIXELS = 14


@dataclass(frozen=True)
class DotProduct:
    """One int8 dot-product instruction as the schedule uses it."""

    name: str
    intrinsic: str  # the registered tensor intrinsic
    data_dtype: str  # the activations' code type it takes (weights are int8)
    lanes: int  # int32 accumulators per instruction
    feature: str  # the LLVM target feature that has it
    max_vectors: int  # the search's largest number of channel vectors per tile
    default_vectors: int

    def available(self, target: Target) -> bool:
        from tvm.target import codegen

        return target.kind.name == "llvm" and bool(codegen.target_has_features(self.feature, target))


VNNI = DotProduct("vpdpbusd", VNNI_INTRIN, "uint8", lanes=16, feature="avx512vnni", max_vectors=8, default_vectors=2)
SDOT = DotProduct("sdot", SDOT_INTRIN, "int8", lanes=4, feature="dotprod", max_vectors=8, default_vectors=4)
#: In the order a target is asked for them.
DOT_PRODUCTS = (VNNI, SDOT)


def dot_product_of(target: Target) -> DotProduct | None:
    """The dot-product instruction our int8 dense kernels use on ``target``, if it has one."""
    return next((dot for dot in DOT_PRODUCTS if dot.available(target)), None)


def has_vnni(target: Target) -> bool:
    return VNNI.available(target)


def int8_dense_input(target: Target) -> str:
    """The code type the int8 dense convolutions should read on ``target``: what its dot-product
    instruction takes, uint8 without one (LLVM widens either)."""
    dot = dot_product_of(target)
    return dot.data_dtype if dot is not None else "uint8"


def conv_operand_dtypes(sch: s_tir.Schedule, block) -> tuple[str, ...]:
    """(data, weight, accumulator) dtypes of a convolution block."""
    stmt = sch.get(block)
    return (*(r.source.dtype for r in stmt.reads), stmt.writes[0].source.dtype)


def is_int8_conv_for(dot: DotProduct, sch: s_tir.Schedule, block) -> bool:
    """Whether the convolution block multiplies ``dot``'s data type by int8 weights into int32."""
    return conv_operand_dtypes(sch, block) == (dot.data_dtype, "int8", "int32")


def default_tile(conv: ConvNhwc, dot: DotProduct) -> tuple[int, int]:
    """(pixels, vectors): 7 pixels where the row allows (every MobileNet row from 112 down to 7),
    × ``dot.default_vectors`` channel vectors where the channels allow; on VNNI 7 × 2 (14
    accumulators) was the fastest tile on MobileNet's 14×14 and 7×7 layers here."""
    pixels = 7 if conv.w % 7 == 0 else largest_divisor_at_most(conv.w, 8)
    vectors = largest_divisor_at_most(conv.f // dot.lanes, dot.default_vectors)
    return pixels, vectors


def schedule_conv_dot(sch: s_tir.Schedule, conv_block, conv: ConvNhwc, dot: DotProduct, cores: int, search: bool = False):
    """Schedule the int8 dense convolution in ``sch`` on ``dot``; returns its epilogue block (or None)."""
    lanes = dot.lanes
    epilogue = inline_around(sch, conv_block)
    packed = sch.cache_read(conv_block, 1, "global")
    sch.transform_layout(packed, ("write", 0), lambda kh, kw, c, f: (kh, kw, f // lanes, c // GROUP, f % lanes, c % GROUP))
    sch.annotate(packed, "meta_schedule.layout_rewrite_preproc", True)
    n, h, w, f, kh, kw, c = sch.get_loops(conv_block)
    f_blocks, f_lanes = sch.split(f, factors=[None, lanes])
    c_groups, c_lanes = sch.split(c, factors=[None, GROUP])
    if search:
        w_factors = sch.sample_perfect_tile(w, n=2, max_innermost_factor=MAX_PIXELS)
        f_factors = sch.sample_perfect_tile(f_blocks, n=2, max_innermost_factor=dot.max_vectors)
    else:
        pixels, vectors = default_tile(conv, dot)
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
    sch.tensorize(f_lanes, dot.intrinsic)
    sch.unroll(w_inner)
    sch.unroll(f_vectors)
    return epilogue


class ConvDot(NhwcConvRule):
    """int8 dense convolutions on one dot-product instruction, where the target has it: the
    default schedule and the design space."""

    def __init__(self, dot: DotProduct) -> None:
        super().__init__()
        register_cpu_tensor_intrinsics()  # TVM's Arm sdot
        register_vnni_intrinsic()
        self.dot = dot

    def matches(self, conv: ConvNhwc) -> bool:
        return conv.c == conv.in_channels and conv.f % self.dot.lanes == 0 and conv.c % GROUP == 0

    def applies(self, sch: s_tir.Schedule, block, conv: ConvNhwc, target: Target) -> bool:
        return self.matches(conv) and self.dot.available(target) and is_int8_conv_for(self.dot, sch, block)

    def schedule(self, sch, block, conv, unit, cores, search):
        return schedule_conv_dot(sch, block, conv, self.dot, cores, search)
