"""Shared steps of the NHWC convolution schedules: find the blocks, inline around the convolution.

A legalised, fused MobileNet convolution kernel is ``pad → conv → add bias → ReLU`` (TOPI's NHWC
compute, blocks named ``conv2d_nhwc`` / ``group_conv2d_nhwc`` / ``depth_conv2d_nhwc``). The
schedules inline the padding into the convolution's loads, merge bias and ReLU into one epilogue
block, and compute that epilogue per register tile right after the tile's last accumulation.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

from tvmc_mobilenet.schedules.cpu.vector_unit import VectorUnit, target_cores, vector_unit

#: Names TOPI gives the NHWC convolution block.
NHWC_CONV_BLOCKS = frozenset({"conv2d_nhwc", "group_conv2d_nhwc", "depth_conv2d_nhwc"})


@dataclass(frozen=True)
class ConvNhwc:
    """Extents of an NHWC convolution block: out ``n×h×w×f``, window ``kh×kw``, ``c`` input
    channels per group, and the input feature map's channel count."""

    n: int
    h: int
    w: int
    f: int
    kh: int
    kw: int
    c: int
    in_channels: int

    @property
    def is_pointwise(self) -> bool:
        return self.kh == self.kw == 1

    @property
    def is_depthwise(self) -> bool:
        return self.c == 1 and self.f == self.in_channels and self.in_channels > 1


def conv_nhwc_extents(sch: s_tir.Schedule, block) -> ConvNhwc | None:
    """The extents of ``block`` if it is an NHWC convolution block with static shapes, else None."""
    stmt = sch.get(block)
    if stmt.name_hint not in NHWC_CONV_BLOCKS:
        return None
    extents = [iv.dom.extent for iv in stmt.iter_vars]
    kinds = [iv.iter_type for iv in stmt.iter_vars]
    if len(extents) != 7 or not all(isinstance(e, tirx.IntImm) for e in extents):
        return None
    if kinds != [tirx.IterVar.DataPar] * 4 + [tirx.IterVar.CommReduce] * 3:
        return None
    n, h, w, f, kh, kw, c = (int(e) for e in extents)
    data = stmt.reads[0].source
    in_channels = int(data.shape[-1]) if len(data.shape) == 4 else c
    return ConvNhwc(n, h, w, f, kh, kw, c, in_channels)


def find_conv_nhwc(sch: s_tir.Schedule):
    """(block, extents) of the kernel's NHWC convolution block, or None."""
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        conv = conv_nhwc_extents(sch, block)
        if conv is not None:
            return block, conv
    return None


def inline_around(sch: s_tir.Schedule, conv) -> object | None:
    """Inline the producers of ``conv`` (padding) and all but the last consumer (bias add into
    ReLU). Returns the epilogue block (the kernel's output block), or None when the convolution
    writes the output itself."""
    for producer in sch.get_producers(conv):
        if sch.get(producer).name_hint != "root":
            sch.compute_inline(producer)
    consumers = sch.get_consumers(conv)
    epilogue = None
    while consumers:
        block = consumers[0]
        following = sch.get_consumers(block)
        if following:
            sch.compute_inline(block)
            consumers = sch.get_consumers(conv)
        else:
            epilogue = block
            break
    return epilogue


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


def leave_to_this_rule(sch: s_tir.Schedule, *blocks) -> None:
    """Mark blocks so that MetaSchedule's generic rules do not touch them after a custom rule
    scheduled them (its ``PostOrderApply`` skips blocks with a ``schedule_rule`` annotation and
    ``ApplyCustomRule`` ignores the value ``"None"``)."""
    for block in blocks:
        if block is not None and not sch.get(block).annotations.get("schedule_rule"):
            sch.annotate(block, "schedule_rule", "None")


class NhwcConvRule(ScheduleRule):
    """One kind of NHWC convolution kernel, scheduled by :meth:`schedule` in two forms: as a
    DLight rule with fixed decisions (the default schedule) and, through :meth:`design_space`,
    as a MetaSchedule custom rule with sampled ones."""

    def matches(self, conv: ConvNhwc) -> bool:
        raise NotImplementedError

    def schedule(self, sch: s_tir.Schedule, block, conv: ConvNhwc, unit: VectorUnit, cores: int, search: bool):
        """Schedule the kernel around ``block``; returns its epilogue block (None without one)."""
        raise NotImplementedError

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        found = find_conv_nhwc(sch)
        if found is None or not self.matches(found[1]):
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
