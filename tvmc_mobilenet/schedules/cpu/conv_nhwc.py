"""The CPU side of the NHWC convolution schedules: register tiles over parallel loops.

The schedules inline the padding into the convolution's loads, merge bias and ReLU into one
epilogue block (:mod:`tvmc_mobilenet.schedules.nhwc`), and compute that epilogue per register tile
right after the tile's last accumulation.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

from tvmc_mobilenet.schedules.cpu.vector_unit import VectorUnit, target_cores, vector_unit
from tvmc_mobilenet.schedules.nhwc import ConvNhwc, conv_nhwc_extents, find_conv_nhwc, leave_to_this_rule


def finish_tiles(
    sch: s_tir.Schedule, conv_block, epilogue, tile_outer: list, first_reduction, unrolled: list, lanes_loop, lanes: int, cores: int
):
    """The steps every register-tiled NHWC convolution ends with: fuse the loops over tiles and
    run them in parallel, unroll the tile's loops, vectorise its channel lanes, compute the
    epilogue (bias + ReLU) per tile, and split the accumulator's zeroing from the reduction."""
    tile_loop = sch.fuse(*tile_outer)
    if cores > 1:
        sch.parallel(tile_loop)
    for loop in unrolled:
        sch.unroll(loop)
    if lanes > 1:
        sch.vectorize(lanes_loop)
    if epilogue is not None:
        # Unit loops kept: a MetaSchedule trace replays with other tile sizes and must find the
        # same number of epilogue loops.
        sch.reverse_compute_at(epilogue, tile_loop, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(epilogue)[-1])
    sch.decompose_reduction(conv_block, first_reduction)


class NhwcConvRule(ScheduleRule):
    """One kind of NHWC convolution kernel, scheduled by :meth:`schedule` in two forms: as a
    DLight rule with fixed decisions (the default schedule) and, through :meth:`design_space`,
    as a MetaSchedule custom rule with sampled ones."""

    def matches(self, conv: ConvNhwc) -> bool:
        raise NotImplementedError

    def applies(self, sch: s_tir.Schedule, block, conv: ConvNhwc, target: Target) -> bool:
        """Whether this rule schedules the kernel (by default: whether it :meth:`matches` its shape)."""
        return self.matches(conv)

    def schedule(self, sch: s_tir.Schedule, block, conv: ConvNhwc, unit: VectorUnit, cores: int, search: bool):
        """Schedule the kernel around ``block``; returns its epilogue block (None without one)."""
        raise NotImplementedError

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        found = find_conv_nhwc(sch)
        if found is None or not self.applies(sch, *found, target):
            return None
        self.schedule(sch, *found, vector_unit(target), target_cores(target), search=False)
        return sch

    def design_space(self, target: Target):
        """MetaSchedule custom rule ``(sch, block) -> [sch]``: :meth:`schedule` with sampling."""
        unit, cores = vector_unit(target), target_cores(target)

        def apply(sch: s_tir.Schedule, block):
            epilogue = self.schedule(sch, block, conv_nhwc_extents(sch, block), unit, cores, search=True)
            leave_to_this_rule(sch, epilogue, sch.get_sblock("root"))
            return [sch]

        return apply
