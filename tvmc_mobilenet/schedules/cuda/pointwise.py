"""Pointwise 1×1 convolution on a CUDA GPU, NHWC: a tiled GEMM in shared memory.

NHWC makes the 1×1 convolution ``out[pixels, F] = in[pixels, C] · W[C, F]`` with pixels = n·h·w.
A thread block computes a ``rows × columns × channels`` output tile; each thread a
``columns × channels`` register tile of it (outer products, so each value loaded from shared memory is used several
times). The reduction over input channels goes in steps: per step the block's threads copy the
input slab (pixels × step) and the weight slab (step × channels) into shared memory together,
then accumulate from there. Bias + ReLU are applied as the registers are written back.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir
from tvm.target import Target

from tvmc_mobilenet.schedules.cuda.gpu_conv import GpuConvRule, max_threads, registers_with_epilogue, split_tile
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, inline_around, largest_divisor_at_most

#: Threads per block of the default schedule.
DEFAULT_THREADS = 256
#: Largest register tile per thread along pixels and along channels.
MAX_INNER = 4
#: Largest number of input channels copied to shared memory per step.
MAX_REDUCTION_STEP = 16
#: Upper bounds the design space samples the register tile and the reduction step under.
SEARCH_MAX_INNER = 8
SEARCH_MAX_REDUCTION_STEP = 32
SEARCH_MAX_ROW_THREADS = 8
SEARCH_MAX_COLUMN_THREADS = 8
SEARCH_MAX_CHANNEL_THREADS = 16
#: Vector lengths of the copies into shared memory the design space chooses from.
COPY_VECTOR_LENGTHS = (1, 2, 4)


@dataclass(frozen=True)
class GpuPointwiseTiles:
    """Threads per block along rows, columns and output channels; registers per thread along
    columns and channels; input channels per reduction step."""

    row_threads: int
    column_threads: int
    column_inner: int
    channel_threads: int
    channel_inner: int
    reduction_step: int

    @property
    def threads(self) -> int:
        return self.row_threads * self.column_threads * self.channel_threads


def default_gpu_pointwise_tiles(conv: ConvNhwc, target: Target) -> GpuPointwiseTiles:
    threads = min(DEFAULT_THREADS, max_threads(target))
    channel_inner = largest_divisor_at_most(conv.f, MAX_INNER)
    channel_threads = largest_divisor_at_most(conv.f // channel_inner, 16)
    column_inner = largest_divisor_at_most(conv.w, MAX_INNER)
    column_threads = largest_divisor_at_most(conv.w // column_inner, 8)
    row_threads = largest_divisor_at_most(conv.h, max(1, threads // (channel_threads * column_threads)))
    step = largest_divisor_at_most(conv.c, MAX_REDUCTION_STEP)
    return GpuPointwiseTiles(row_threads, column_threads, column_inner, channel_threads, channel_inner, step)


def schedule_gpu_pointwise(sch: s_tir.Schedule, conv_block, conv: ConvNhwc, tiles: GpuPointwiseTiles, search: bool = False) -> None:
    """Schedule the pointwise kernel in ``sch``; with ``search`` the threads, register tiles and
    reduction step are sampled (MetaSchedule's design space), and the copies to shared memory are
    left to its cooperative-fetch postprocessor, which spreads them over the sampled threads.

    Rows and columns are tiled separately (not as one fused pixel axis), so that every tile is a
    box of the feature map and the copies and write-backs have constant extents."""
    epilogue = inline_around(sch, conv_block)
    n, h, w, f, kh, kw, c = sch.get_loops(conv_block)
    # Registers per thread first, then threads per block of what is left, each under its own
    # bound: a sample never asks for more than 8 × 8 × 16 threads.
    h_block, h_thread = split_tile(sch, h, tiles.row_threads, SEARCH_MAX_ROW_THREADS, search)
    w_rest, w_inner = split_tile(sch, w, tiles.column_inner, SEARCH_MAX_INNER, search)
    w_block, w_thread = split_tile(sch, w_rest, tiles.column_threads, SEARCH_MAX_COLUMN_THREADS, search)
    f_rest, f_inner = split_tile(sch, f, tiles.channel_inner, SEARCH_MAX_INNER, search)
    f_block, f_thread = split_tile(sch, f_rest, tiles.channel_threads, SEARCH_MAX_CHANNEL_THREADS, search)
    c_outer, c_inner = split_tile(sch, c, tiles.reduction_step, SEARCH_MAX_REDUCTION_STEP, search)
    sch.reorder(n, h_block, w_block, f_block, h_thread, w_thread, f_thread, kh, kw, c_outer, c_inner, w_inner, f_inner)
    sch.bind(sch.fuse(n, h_block, w_block, f_block), "blockIdx.x")
    thread_loop = sch.fuse(h_thread, w_thread, f_thread)
    sch.bind(thread_loop, "threadIdx.x")
    for operand in (0, 1):  # input slab, weight slab
        shared = sch.cache_read(conv_block, operand, "shared")
        sch.compute_at(shared, c_outer, preserve_unit_loops=True)  # same loops whatever the tile sizes
        loops = sch.get_loops(shared)
        copy_loops = loops[[sch.get(loop).same_as(sch.get(c_outer)) for loop in loops].index(True) + 1 :]
        # At c_outer, under the thread loop: shared memory relaxes the thread binding, so the copy
        # covers the whole block's slab and its fused loop is spread over the block's threads.
        copy = sch.fuse(*copy_loops)
        if search:  # MetaSchedule's convention (its MultiLevelTiling's): the block, and a sampled vector length
            vector = sch.sample_categorical(list(COPY_VECTOR_LENGTHS), [1 / len(COPY_VECTOR_LENGTHS)] * len(COPY_VECTOR_LENGTHS))
            sch.annotate(shared, "meta_schedule.cooperative_fetch", vector)
        else:
            _, copy_thread = sch.split(copy, factors=[None, tiles.threads])
            sch.bind(copy_thread, "threadIdx.x")
    registers_with_epilogue(sch, conv_block, epilogue, thread_loop)
    for loop in (c_inner, w_inner, f_inner):
        sch.unroll(loop)
    sch.decompose_reduction(conv_block, kh)


class GpuPointwise(GpuConvRule):
    """Our pointwise kernels on CUDA: the default schedule (a DLight rule) and the design space."""

    def matches(self, conv: ConvNhwc) -> bool:
        return conv.is_pointwise

    def schedule(self, sch, block, conv, target, search):
        schedule_gpu_pointwise(sch, block, conv, default_gpu_pointwise_tiles(conv, target), search)
