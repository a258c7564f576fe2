"""Depthwise 3×3 convolution on a CUDA GPU, NHWC: consecutive threads on consecutive channels.

In NHWC the channels of a pixel are contiguous in the input, the ``kh×kw×1×C`` weights and the
output, so threads that take neighbouring channels make every load and store coalesced (strides
1 and 2 alike). A thread computes a few outputs along a row of one channel in registers, with the
window unrolled, so a weight is loaded once per thread and overlapping input columns are shared.
Padding is a condition on the loads, not a padded copy. Bias + ReLU are applied on write-back.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir
from tvm.target import Target

from tvmc_mobilenet.schedules.cuda.gpu_conv import GpuConvRule, max_threads, registers_with_epilogue, split_tile
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, inline_around, largest_divisor_at_most

#: Threads per block of the default schedule, and the most of them on channels.
DEFAULT_THREADS = 256
MAX_CHANNEL_THREADS = 128
#: Outputs along a row per thread (default; the design space samples up to SEARCH_MAX_PIXELS).
PIXELS_PER_THREAD = 2
SEARCH_MAX_PIXELS = 4
SEARCH_MAX_PIXEL_THREADS = 8


@dataclass(frozen=True)
class GpuDepthwiseTiles:
    channel_threads: int
    pixel_threads: int
    pixels_per_thread: int


def default_gpu_depthwise_tiles(conv: ConvNhwc, target: Target) -> GpuDepthwiseTiles:
    threads = min(DEFAULT_THREADS, max_threads(target))
    channel_threads = largest_divisor_at_most(conv.f, MAX_CHANNEL_THREADS)
    inner = largest_divisor_at_most(conv.w, PIXELS_PER_THREAD)
    pixel_threads = largest_divisor_at_most(conv.w // inner, threads // channel_threads)
    return GpuDepthwiseTiles(channel_threads, pixel_threads, inner)


def schedule_gpu_depthwise(sch: s_tir.Schedule, conv_block, conv: ConvNhwc, tiles: GpuDepthwiseTiles, search: bool = False) -> None:
    """Schedule the depthwise kernel in ``sch``; with ``search`` the threads on channels and on the
    row, and the outputs per thread, are sampled (MetaSchedule's design space)."""
    epilogue = inline_around(sch, conv_block)
    n, h, w, f, kh, kw, c = sch.get_loops(conv_block)
    # Outputs per thread first, then threads per block of what is left, each under its own bound:
    # a sample never asks for more than 8 × 128 threads.
    w_rest, w_inner = split_tile(sch, w, tiles.pixels_per_thread, SEARCH_MAX_PIXELS, search)
    w_block, w_thread = split_tile(sch, w_rest, tiles.pixel_threads, SEARCH_MAX_PIXEL_THREADS, search)
    f_block, f_thread = split_tile(sch, f, tiles.channel_threads, MAX_CHANNEL_THREADS, search)
    sch.reorder(n, h, w_block, f_block, w_thread, f_thread, kh, kw, c, w_inner)
    sch.bind(sch.fuse(n, h, w_block, f_block), "blockIdx.x")
    thread_loop = sch.fuse(w_thread, f_thread)
    sch.bind(thread_loop, "threadIdx.x")
    registers_with_epilogue(sch, conv_block, epilogue, thread_loop)
    for loop in (kh, kw, w_inner):
        sch.unroll(loop)
    sch.decompose_reduction(conv_block, kh)


class GpuDepthwise(GpuConvRule):
    """Our depthwise kernels on CUDA: the default schedule (a DLight rule) and the design space."""

    def matches(self, conv: ConvNhwc) -> bool:
        return conv.is_depthwise

    def schedule(self, sch, block, conv, target, search):
        schedule_gpu_depthwise(sch, block, conv, default_gpu_depthwise_tiles(conv, target), search)
