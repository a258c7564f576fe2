"""The GPU side of the NHWC convolution schedules: thread blocks of output tiles, registers per
thread, bias + ReLU fused into the write-back.

Every output tile of a block is computed by its threads into registers (``local``); the
write-back from registers to the output applies the epilogue on the way (``bias + ReLU`` is
inlined into it), so the convolution's intermediate result never reaches global memory.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

from tvmc_mobilenet.schedules.nhwc import ConvNhwc, conv_nhwc_extents, find_conv_nhwc, leave_to_this_rule


def max_threads(target: Target) -> int:
    return int(target.attrs.get("max_num_threads", 1024))


def split_tile(sch: s_tir.Schedule, loop, inner: int, max_inner: int, search: bool):
    """Split ``loop`` in two: the inner extent fixed to ``inner``, or (with ``search``) a sampled
    perfect tile whose inner extent is at most ``max_inner``."""
    factors = sch.sample_perfect_tile(loop, n=2, max_innermost_factor=max_inner) if search else [None, inner]
    return sch.split(loop, factors=factors)


def all_blocks(sch: s_tir.Schedule) -> list:
    """Every block of the kernel (the ones this rule made included), root first."""
    import tvm_ffi

    names: list[str] = []
    tvm_ffi.structural_walk(sch.mod["main"].body, [(s_tir.SBlock, lambda block: names.append(block.name_hint))], order="pre")
    return [sch.get_sblock(name) for name in names]


def registers_with_epilogue(sch: s_tir.Schedule, conv_block, epilogue, thread_loop) -> None:
    """Accumulate ``conv_block`` in registers and write each thread's results back right after
    its last accumulation, through the epilogue (bias + ReLU) when the kernel has one."""
    write_back = sch.cache_write(conv_block, 0, "local")
    # cache_write made conv_block write registers and write_back copy them out; the copy is
    # computed per thread, and the epilogue is folded into it.
    sch.reverse_compute_at(write_back, thread_loop, preserve_unit_loops=True)
    if epilogue is not None:
        sch.reverse_compute_inline(epilogue)


class GpuConvRule(ScheduleRule):
    """One kind of NHWC convolution kernel on a CUDA GPU, in two forms like the CPU rules: a
    DLight rule with fixed decisions (the default schedule) and a MetaSchedule custom rule
    (:meth:`design_space`) with sampled ones."""

    def matches(self, conv: ConvNhwc) -> bool:
        raise NotImplementedError

    def schedule(self, sch: s_tir.Schedule, block, conv: ConvNhwc, target: Target, search: bool) -> None:
        raise NotImplementedError

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "cuda":
            return None
        sch = s_tir.Schedule(func)
        found = find_conv_nhwc(sch)
        if found is None or not self.matches(found[1]):
            return None
        self.schedule(sch, *found, target, search=False)
        return sch

    def design_space(self, target: Target):
        """MetaSchedule custom rule ``(sch, block) -> [sch]``: :meth:`schedule` with sampling."""

        def apply(sch: s_tir.Schedule, block):
            self.schedule(sch, block, conv_nhwc_extents(sch, block), target, search=True)
            leave_to_this_rule(sch, *all_blocks(sch))
            return [sch]

        return apply
