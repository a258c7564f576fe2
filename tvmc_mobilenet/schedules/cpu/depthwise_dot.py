"""int8 depthwise convolutions on a 4-byte dot product (x86 ``vpdpbusd``, Arm ``sdot``): one
instruction per window column.

``vpdpbusd`` adds 4 byte products into each int32 lane. A depthwise convolution never mixes
channels, so the 4 bytes of a lane must be 4 taps of that lane's own channel: here the 4 rows of
one window column. The quantized graph gives these kernels a fourth kernel row of zeros and one
more row of bottom padding (``QuantizedNetwork.relax_module(column_dot_lanes=…)``), so that each
column is exactly one 4-byte group, and this schedule

* copies each tile's input patch (4 rows × the columns its outputs read × its channels, the
  padding included) into a small local buffer laid out column by column, so that the 4 rows of a
  column are 4 consecutive vectors;
* repacks the weights at compile time from HWIO to ``[kw][f/lanes][lanes][kh]``, one vector per
  column and channel block (a layout-rewrite block evaluated on the constant weights);
* per column one shuffle interleaves its 4 row vectors so that each lane holds its channel's 4
  rows (``vpermt2b`` on AVX-512 VBMI; LLVM shares it between the outputs that read the column),
  and per output and column one ``vpdpbusd`` adds them.

That is 3 dot products per output vector where the widening schedule (schedules/cpu/depthwise.py)
takes 9 multiply-adds of one useful product each. ``sdot`` multiplies int8 by int8: for it the
graph hands the kernel its uint8 input codes less 128, converted as the patch is copied, padding
included (code 0, real zero, becomes -128), and adds 128 · Σw to the bias, so the sums are those of
the uint8 codes (``QuantizedNetwork.relax_module(column_dot_input="int8")``). A tile is ``pixels``
outputs along a row × one vector of ``lanes`` channels, as there; the requantization epilogue runs
on the tile.
"""

from __future__ import annotations

from tvm import s_tir
from tvm.target import Target

from tvmc_mobilenet.schedules.cpu.conv_dot import DOT_PRODUCTS, DotProduct, conv_operand_dtypes
from tvmc_mobilenet.schedules.cpu.conv_nhwc import NhwcConvRule, finish_tiles
from tvmc_mobilenet.schedules.cpu.depthwise import MAX_PIXELS_PER_TILE, MIN_PARALLEL_MACS
from tvmc_mobilenet.schedules.intrinsics import register_schedule_intrinsics
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, inline_around, largest_divisor_at_most, leave_to_this_rule

#: Kernel rows the column dot product takes: the dot product's group of 4 bytes.
COLUMN_ROWS = 4
#: Largest input patch per tile, in bytes: TVM keeps a smaller buffer on the stack (where LLVM
#: holds it in registers) and takes a larger one from its workspace pool at every tile (its
#: ``kMaxStackAlloca``; a 1,088-byte patch made the 112×112×64 stride-2 layer 1.8× slower).
MAX_PATCH_BYTES = 1023
#: The dot products with a depthwise form, in the order a target is asked for them.
COLUMN_DOT_PRODUCTS = tuple(dot for dot in DOT_PRODUCTS if dot.depthwise_intrinsic is not None)


def column_dot_of(target: Target | None) -> DotProduct | None:
    """The narrowest depthwise dot product ``target`` has (a depthwise convolution whose channels
    are a multiple of its lanes runs on it), or None without one."""
    if target is None:
        return None
    dots = [dot for dot in COLUMN_DOT_PRODUCTS if dot.available(target)]
    return min(dots, key=lambda dot: dot.column_lanes) if dots else None


def column_dot_lanes(target: Target | None) -> int | None:
    """Channels per vector of :func:`column_dot_of` ``target``, or None without one."""
    dot = column_dot_of(target)
    return dot.column_lanes if dot is not None else None


def column_dot_input(target: Target | None) -> str:
    """The code type the depthwise kernels of :func:`column_dot_of` ``target`` read: uint8
    (``vpdpbusd``, and without a column dot product) or int8 (Arm ``sdot``: the quantized graph
    then gives them the codes less 128, ``QuantizedNetwork.relax_module(column_dot_input=…)``)."""
    dot = column_dot_of(target)
    return dot.data_dtype if dot is not None else "uint8"


def max_pixels(stride: int, lanes: int) -> int:
    """Outputs along a row per tile whose input patch (4 rows × its columns × ``lanes`` bytes)
    stays within :data:`MAX_PATCH_BYTES`, at most :data:`MAX_PIXELS_PER_TILE`."""
    fitting = [p for p in range(1, MAX_PIXELS_PER_TILE + 1) if COLUMN_ROWS * ((p - 1) * stride + 3) * lanes <= MAX_PATCH_BYTES]
    return max(fitting, default=1)


def conv_stride(sch: s_tir.Schedule, conv_block, conv: ConvNhwc) -> int:
    """The convolution's stride, from its (padded) input's height and its output's."""
    padded_height = int(sch.get(conv_block).reads[0].source.shape[1])
    return max(1, (padded_height - conv.kh) // (conv.h - 1)) if conv.h > 1 else 1


def schedule_depthwise_dot(sch: s_tir.Schedule, conv_block, conv: ConvNhwc, dot: DotProduct, cores: int, search: bool = False):
    """Schedule the int8 depthwise kernel in ``sch`` on ``dot``'s column form; with ``search``
    the outputs per tile along the row are sampled. A tile is one vector of channels: a wider
    patch would not stay on the stack. Returns the epilogue block (None without one)."""
    lanes, stride = dot.column_lanes, conv_stride(sch, conv_block, conv)
    # The weights, repacked once: [kw][f/lanes][lanes][kh].
    packed = sch.cache_read(conv_block, 1, "global")
    sch.transform_layout(packed, ("write", 0), lambda kh, kw, c, f: (kw, c, f // lanes, f % lanes, kh))
    sch.annotate(packed, "meta_schedule.layout_rewrite_preproc", True)
    # The input patch, padding included, column by column.
    patch = sch.cache_read(conv_block, 0, "global")
    for producer in sch.get_producers(patch):
        if sch.get(producer).name_hint != "root":
            sch.compute_inline(producer)
    sch.transform_layout(patch, ("write", 0), lambda n, h, w, c: (n, w, h, c))
    epilogue = inline_around(sch, conv_block, producers=False)

    n, h, w, f, kh, kw, c = sch.get_loops(conv_block)
    f_outer, f_lanes = sch.split(f, factors=[None, lanes])
    if search:
        w_factors = sch.sample_perfect_tile(w, n=2, max_innermost_factor=max_pixels(stride, lanes))
    else:
        w_factors = [None, largest_divisor_at_most(conv.w, max_pixels(stride, lanes))]
    w_outer, w_inner = sch.split(w, factors=w_factors)
    sch.reorder(n, h, w_outer, f_outer, kw, c, w_inner, f_lanes, kh)
    cores = cores if conv.macs >= MIN_PARALLEL_MACS else 1
    # lanes 1: the tensorization below takes the lanes loop, not the vectoriser
    finish_tiles(sch, conv_block, epilogue, [n, h, w_outer, f_outer], kw, [kw, w_inner], f_lanes, 1, cores)
    tile_loop = sch.get_loops(conv_block)[0]
    sch.compute_at(patch, tile_loop, preserve_unit_loops=True)
    patch_loops = sch.get_loops(patch)
    sch.vectorize(patch_loops[-1])
    for loop in patch_loops[2:-1]:
        sch.unroll(loop)
    for producer in sch.get_producers(conv_block):  # the accumulators' zeroing
        if sch.get(producer).name_hint.endswith("_init"):
            sch.vectorize(sch.get_loops(producer)[-1])
    sch.tensorize(f_lanes, dot.depthwise_intrinsic)
    if search:
        leave_to_this_rule(sch, patch)
    return epilogue


class DepthwiseDot(NhwcConvRule):
    """int8 depthwise convolutions with 4 kernel rows on the column form of one dot-product
    instruction, where the target has it: the default schedule and the design space."""

    def __init__(self, dot: DotProduct) -> None:
        super().__init__()
        register_schedule_intrinsics()
        self.dot = dot

    def matches(self, conv: ConvNhwc) -> bool:
        return conv.is_depthwise and conv.kh == COLUMN_ROWS and conv.f % self.dot.column_lanes == 0

    def applies(self, sch: s_tir.Schedule, block, conv: ConvNhwc, target: Target) -> bool:
        return self.matches(conv) and self.dot.available(target) and conv_operand_dtypes(sch, block) == (self.dot.data_dtype, "int8", "int32")

    def schedule(self, sch, block, conv, unit, cores, search):
        return schedule_depthwise_dot(sch, block, conv, self.dot, cores, search)
