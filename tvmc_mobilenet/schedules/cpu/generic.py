"""A fallback schedule for any CPU kernel: parallel outer loops, vectorised inner loop.

TVM's legalised kernels are plain loop nests that run on one core, one element at a time; DLight
has CPU rules only for GEMV and reductions. This rule gives every other kernel (convolutions,
their fused bias + ReLU epilogues, layout and elementwise kernels) the two things that matter most
on a multi-core SIMD CPU, without any search:

* cheap producers and consumers are inlined (padding into the convolution, bias + ReLU chained
  into one elementwise pass);
* in each remaining block the spatial loops are split in two: the outer ones are fused and run in
  parallel, the innermost spatial loop is moved inside the reduction loops and vectorised, so a
  convolution accumulates a whole row of outputs per multiply-add instruction;
* a reduction to a single value (a softmax's max and sum) is vectorised through ``rfactor``;
* a block of fewer than :data:`MIN_PARALLEL_ITERATIONS` iterations stays on one core.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule, try_inline
from tvm.target import Target

from tvmc_mobilenet.schedules.cpu.vector_unit import target_cores, vector_lanes

#: Largest innermost loop vectorised whole; longer ones are split to a multiple of the lanes.
MAX_VECTOR_EXTENT = 64
#: Innermost loops shorter than this are unrolled instead, and LLVM's SLP vectorizer takes the
#: rest: the int8 input kernel (NCHW float → NHWC bytes, 4 channels) vectorised over its 4
#: channels gathers from 3 planes and took 0.079 ms on 1.0-224; unrolled, 0.0095 ms.
MIN_VECTOR_EXTENT = 8
#: Parallel work items per core wanted before the outer loops stop being fused.
PARALLEL_ITEMS_PER_CORE = 8
#: Blocks of fewer iterations run on one core: waking the pool for the 1,000 classes' scale or
#: softmax, or to sum a 4×4×256 map, cost more than the work (~0.8 µs a launch on a 2-core Zen 4).
MIN_PARALLEL_ITERATIONS = 16384


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _vector_width(extent: int, lanes: int) -> int | None:
    """Elements of an innermost loop of ``extent`` vectorised at a time: all of them up to
    :data:`MAX_VECTOR_EXTENT`, else a multiple of the lanes that divides it, else its largest
    divisor from :data:`MIN_VECTOR_EXTENT` up to :data:`MAX_VECTOR_EXTENT` (1000 classes: 50), else
    None (not vectorised)."""
    if extent <= MAX_VECTOR_EXTENT:
        return extent
    if extent % lanes == 0:
        return lanes
    divisors = [d for d in range(MIN_VECTOR_EXTENT, MAX_VECTOR_EXTENT + 1) if extent % d == 0]
    return max(divisors) if divisors else None


class ParallelVectorize(ScheduleRule):
    """Parallelise and vectorise every block of a kernel that no better rule claimed."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        block_infos = normalize_prim_func(sch)
        if block_infos is None:
            return None
        block_infos = try_inline(sch, block_infos)
        cores = target_cores(target)
        lanes = vector_lanes(target)
        for info in block_infos:
            self._schedule_block(sch, info, cores, lanes)
        return sch

    def _schedule_block(self, sch: s_tir.Schedule, info, cores: int, lanes: int) -> None:
        block = info.block_rv
        loops = sch.get_loops(block)
        kinds = info.dom_kind()
        if not loops or len(kinds) != len(loops) or "O" in kinds:
            return
        spatial = [loop for loop, kind in zip(loops, kinds, strict=True) if kind == "S"]
        reduction = [loop for loop, kind in zip(loops, kinds, strict=True) if kind == "R"]
        if not spatial:
            return
        if reduction and all(_extent(sch, loop) == 1 for loop in spatial):
            self._schedule_row_reduction(sch, block, reduction[-1], lanes)
            return
        iterations = 1
        for loop in loops:
            iterations *= _extent(sch, loop) or MIN_PARALLEL_ITERATIONS
        # Innermost spatial loop: vectorised, placed inside the reduction loops.
        inner = spatial[-1]
        outer = spatial[:-1]
        inner_extent = _extent(sch, inner)
        vector_loop = None
        if inner_extent is not None and inner_extent > 1:
            width = _vector_width(inner_extent, lanes)
            if width == inner_extent:
                vector_loop = inner
            elif width is not None:
                rest, vector_loop = sch.split(inner, factors=[None, width])
                outer = outer + [rest]
        sch.reorder(*outer, *reduction, *([vector_loop] if vector_loop is not None else [inner]))
        # Outer spatial loops: fuse from the outside until there is enough parallel work.
        if outer:
            wanted = cores * PARALLEL_ITEMS_PER_CORE
            fused, total = [], 1
            for loop in outer:
                fused.append(loop)
                total *= _extent(sch, loop) or wanted
                if total >= wanted:
                    break
            parallel = sch.fuse(*fused) if len(fused) > 1 else fused[0]
            if cores > 1 and _extent(sch, parallel) != 1 and iterations >= MIN_PARALLEL_ITERATIONS:
                sch.parallel(parallel)
        if vector_loop is not None and (_extent(sch, vector_loop) or MIN_VECTOR_EXTENT) < MIN_VECTOR_EXTENT:
            sch.unroll(vector_loop)
            vector_loop = None
        if vector_loop is not None:
            sch.vectorize(vector_loop)
        if reduction:  # after vectorize: the update block alone is no longer a reduction block
            sch.decompose_reduction(block, reduction[0])

    @staticmethod
    def _schedule_row_reduction(sch: s_tir.Schedule, block, loop, lanes: int) -> None:
        """A reduction to one value (a softmax's max and sum over 1,000 classes): its innermost
        reduction loop split by the vector width and factored out (``rfactor``), so that a vector
        of partial results is reduced at a time and the last few are reduced alone, on one core.
        Left serial where the loop is too short to vectorise."""
        extent = _extent(sch, loop)
        width = _vector_width(extent, lanes) if extent else None
        if width is None or width < MIN_VECTOR_EXTENT:
            sch.decompose_reduction(block, sch.get_loops(block)[0])
            return
        outer, inner = sch.split(loop, factors=[None, width])
        partial = sch.rfactor(inner, factor_axis=0)
        partial_loops = sch.get_loops(partial)  # (spatial ones of extent 1, outer, inner)
        sch.vectorize(partial_loops[-1])
        sch.decompose_reduction(partial, partial_loops[-2])
        sch.decompose_reduction(block, sch.get_loops(block)[0])
