"""What every NHWC convolution schedule needs, whatever the backend: find the convolution block
and its extents, inline the padding into its loads and bias + ReLU into one epilogue block.

A legalised, fused MobileNet convolution kernel is ``pad → conv → add bias → ReLU`` (TOPI's NHWC
compute, blocks named ``conv2d_nhwc`` / ``group_conv2d_nhwc`` / ``depth_conv2d_nhwc``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, tirx

#: Names TOPI gives the NHWC convolution block.
NHWC_CONV_BLOCKS = frozenset({"conv2d_nhwc", "group_conv2d_nhwc", "depth_conv2d_nhwc"})


def largest_divisor_at_most(extent: int, limit: int) -> int:
    """The largest divisor of ``extent`` that is ≤ ``limit`` (1 at least)."""
    for candidate in range(min(extent, max(1, limit)), 0, -1):
        if extent % candidate == 0:
            return candidate
    return 1


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
    def macs(self) -> int:
        """Multiply-accumulates of the whole convolution."""
        return self.n * self.h * self.w * self.f * self.kh * self.kw * self.c

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


def inline_around(sch: s_tir.Schedule, conv, producers: bool = True) -> object | None:
    """Inline the producers of ``conv`` (padding; with ``producers`` only) and all but the last
    consumer (bias add into ReLU). Returns the epilogue block (the kernel's output block), or None
    when the convolution writes the output itself."""
    for producer in sch.get_producers(conv) if producers else []:
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


def leave_to_this_rule(sch: s_tir.Schedule, *blocks) -> None:
    """Mark blocks so that MetaSchedule's generic rules do not touch them after a custom rule
    scheduled them (its ``PostOrderApply`` skips blocks with a ``schedule_rule`` annotation and
    ``ApplyCustomRule`` ignores the value ``"None"``)."""
    for block in blocks:
        if block is not None and not sch.get(block).annotations.get("schedule_rule"):
            sch.annotate(block, "schedule_rule", "None")
