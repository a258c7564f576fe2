"""int8 dense convolutions on CPUs with an integer dot-product instruction: register tiles of it.

The instructions (:data:`DOT_PRODUCTS`, the first a target has is used): x86's AVX-512 VNNI
``vpdpbusd`` (uint8 × int8, 16 int32 lanes), Arm's dotprod ``sdot`` (int8 × int8, 4 lanes;
Cortex-A55, A76 and later), AVX-VNNI's ``vpdpbusd`` on 256-bit vectors (8 lanes), and on plain
AVX2 ``vpmaddwd`` on bytes widened to 16 bits. Each multiplies ``group`` (4, or 2 for
``vpmaddwd``) consecutive input channels of one pixel (broadcast to every lane) by a lanes ×
group block of weights and adds each lane's products into its int32 accumulator.

The kernels are MobileNet's pointwise 1×1 convolutions, the GEMM ``acc[p, f] += in[p, c] · W[c, f]``
(compiler/quantize.py writes their inputs in the operand type the target's instruction takes),
and its first 3×3 convolution, whose input the quantizer pads to 4 channels (one 4-byte group per
pixel) and to its border, so that each of the 9 taps is one more step of the same reduction.

The weights are repacked once, at compile time, from HWIO to ``[kh][kw][f/lanes][c/group][lanes][group]``
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
from tvmc_mobilenet.schedules.intrinsics import (
    AVX2_INTRIN,
    AVX_VNNI_INTRIN,
    DEPTHWISE_AVX_VNNI_INTRIN,
    DEPTHWISE_SDOT_INTRIN,
    DEPTHWISE_VNNI_INTRIN,
    SDOT_INTRIN,
    VNNI_INTRIN,
    register_schedule_intrinsics,
)
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, inline_around, largest_divisor_at_most

#: The search's largest number of pixels along the row per tile.
MAX_PIXELS = 14
#: Smaller convolutions run on one core: about 2 µs of one core's dot products, about what TVM's
#: parallel launch costs. With everything parallel, int8 0.25-128 took 0.116 ms against 0.094 ms
#: at a 2 M threshold (a Zen 5 host); at 2 M, its five 1 M-MAC 128×8×8 pointwise kernels took
#: 26.1 µs on one core against 20.9 µs on two at 500 K (a Zen 4 host, ``artifacts_in_turns.py
#: --kernels pointwise``, benchmarks/results/int8_parallel_threshold_0.25_128.json).
MIN_PARALLEL_MACS = 500_000


@dataclass(frozen=True)
class DotProduct:
    """One int8 dot-product instruction as the schedule uses it."""

    name: str
    intrinsic: str  # the registered tensor intrinsic
    data_dtype: str  # the activations' code type it takes (weights are int8)
    lanes: int  # int32 accumulators per instruction
    group: int  # input channels each lane sums
    feature: str  # the LLVM target feature that has it
    max_vectors: int  # the search's largest number of channel vectors per tile
    default_vectors: int
    registers: int = 32  # vector registers (AVX2 without AVX-512 has 16)
    depthwise_intrinsic: str | None = None  # the same instruction on a depthwise window's column (depthwise_dot.py)
    depthwise_lanes: int | None = None  # channels that intrinsic takes, where not ``lanes`` (sdot: 4 instructions)

    @property
    def column_lanes(self) -> int:
        """Channels per call of :attr:`depthwise_intrinsic`."""
        return self.depthwise_lanes or self.lanes

    def available(self, target: Target) -> bool:
        from tvm.target import codegen

        return target.kind.name == "llvm" and bool(codegen.target_has_features(self.feature, target))


VNNI = DotProduct(
    "vpdpbusd", VNNI_INTRIN, "uint8", lanes=16, group=4, feature="avx512vnni", max_vectors=8, default_vectors=2, depthwise_intrinsic=DEPTHWISE_VNNI_INTRIN
)
SDOT = DotProduct(
    "sdot",
    SDOT_INTRIN,
    "int8",
    lanes=4,
    group=4,
    feature="dotprod",
    max_vectors=8,
    default_vectors=4,
    depthwise_intrinsic=DEPTHWISE_SDOT_INTRIN,
    depthwise_lanes=16,
)
AVX_VNNI = DotProduct(
    "vpdpbusd (AVX-VNNI)",
    AVX_VNNI_INTRIN,
    "uint8",
    lanes=8,
    group=4,
    feature="avxvnni",
    max_vectors=4,
    default_vectors=2,
    registers=16,
    depthwise_intrinsic=DEPTHWISE_AVX_VNNI_INTRIN,
)
AVX2 = DotProduct("vpmaddwd", AVX2_INTRIN, "uint8", lanes=8, group=2, feature="avx2", max_vectors=4, default_vectors=2, registers=16)
#: In the order a target is asked for them: the first it has is used.
DOT_PRODUCTS = (VNNI, SDOT, AVX_VNNI, AVX2)


def dot_product_of(target: Target) -> DotProduct | None:
    """The dot-product instruction our int8 dense kernels use on ``target``, if it has one."""
    return next((dot for dot in DOT_PRODUCTS if dot.available(target)), None)


def int8_dense_input(target: Target) -> str:
    """The code type the int8 dense convolutions should read on ``target``: what its dot-product
    instruction takes, uint8 without one (LLVM widens either)."""
    dot = dot_product_of(target)
    return dot.data_dtype if dot is not None else "uint8"


def int8_channel_multiple(target: Target) -> int | None:
    """The channel multiple the int8 layers are padded to on ``target``: the lanes of its dense
    dot product (AVX-512 VNNI: 16, so that α 0.25's 8-channel first layers run on it too), or
    None without one."""
    dot = dot_product_of(target)
    return dot.lanes if dot is not None else None


def conv_operand_dtypes(sch: s_tir.Schedule, block) -> tuple[str, ...]:
    """(data, weight, accumulator) dtypes of a convolution block."""
    stmt = sch.get(block)
    return (*(r.source.dtype for r in stmt.reads), stmt.writes[0].source.dtype)


def is_int8_conv_for(dot: DotProduct, sch: s_tir.Schedule, block) -> bool:
    """Whether the convolution block multiplies ``dot``'s data type by int8 weights into int32."""
    return conv_operand_dtypes(sch, block) == (dot.data_dtype, "int8", "int32")


def default_tile(conv: ConvNhwc, dot: DotProduct) -> tuple[int, int]:
    """(pixels, vectors) of the default register tile.

    With 32 vector registers: 7 pixels where the row allows (every MobileNet row from 112 down to
    7) × ``dot.default_vectors`` channel vectors; on VNNI 7 × 2 (14 accumulators) was the fastest
    tile on MobileNet's 14×14 and 7×7 layers here. With 16 (AVX2): the largest tile whose
    accumulators, weight vectors and broadcast pixel fit in them, more vectors on a tie (a pixel
    broadcast costs more than a weight load there).
    """
    blocks = conv.f // dot.lanes
    if dot.registers >= 32:
        pixels = 7 if conv.w % 7 == 0 else largest_divisor_at_most(conv.w, 8)
        return pixels, largest_divisor_at_most(blocks, dot.default_vectors)
    tiles = [
        (p, v)
        for p in range(1, 9)
        for v in range(1, dot.max_vectors + 1)
        if conv.w % p == 0 and blocks % v == 0 and p * v + v + 1 <= dot.registers
    ]
    return max(tiles, key=lambda t: (t[0] * t[1], t[1]))


def schedule_conv_dot(sch: s_tir.Schedule, conv_block, conv: ConvNhwc, dot: DotProduct, cores: int, search: bool = False):
    """Schedule the int8 dense convolution in ``sch`` on ``dot``; returns its epilogue block (or None)."""
    lanes = dot.lanes
    epilogue = inline_around(sch, conv_block)
    packed = sch.cache_read(conv_block, 1, "global")
    group = dot.group
    sch.transform_layout(packed, ("write", 0), lambda kh, kw, c, f: (kh, kw, f // lanes, c // group, f % lanes, c % group))
    sch.annotate(packed, "meta_schedule.layout_rewrite_preproc", True)
    n, h, w, f, kh, kw, c = sch.get_loops(conv_block)
    f_blocks, f_lanes = sch.split(f, factors=[None, lanes])
    c_groups, c_lanes = sch.split(c, factors=[None, group])
    if search:
        w_factors = sch.sample_perfect_tile(w, n=2, max_innermost_factor=MAX_PIXELS)
        f_factors = sch.sample_perfect_tile(f_blocks, n=2, max_innermost_factor=dot.max_vectors)
    else:
        pixels, vectors = default_tile(conv, dot)
        w_factors, f_factors = [None, pixels], [None, vectors]
    w_outer, w_inner = sch.split(w, factors=w_factors)
    f_outer, f_vectors = sch.split(f_blocks, factors=f_factors)
    # Row segments outermost, so that each core takes its own rows and computes every channel
    # block of a segment while its input is in L1.
    sch.reorder(n, h, w_outer, f_outer, kh, kw, c_groups, w_inner, f_vectors, f_lanes, c_lanes)
    tile_loop = sch.fuse(n, h, w_outer, f_outer)
    if cores > 1 and conv.macs >= MIN_PARALLEL_MACS:
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
        register_schedule_intrinsics()
        self.dot = dot

    def matches(self, conv: ConvNhwc) -> bool:
        return conv.c == conv.in_channels and conv.f % self.dot.lanes == 0 and conv.c % self.dot.group == 0

    def applies(self, sch: s_tir.Schedule, block, conv: ConvNhwc, target: Target) -> bool:
        return self.matches(conv) and self.dot.available(target) and is_int8_conv_for(self.dot, sch, block)

    def schedule(self, sch, block, conv, unit, cores, search):
        return schedule_conv_dot(sch, block, conv, self.dot, cores, search)
