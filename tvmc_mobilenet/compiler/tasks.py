"""Tuning tasks: the distinct fused kernels of a model, classified by what their TIR computes.

Every convolution kernel is called ``fused_conv2d…`` whatever it does, so the kind is read from
the kernel's anchor block (its main reduction): the extents of its reduction axes and how many
buffers it reads.

* two inputs and three reduction axes (channels, kernel rows, kernel columns; kernel rows,
  kernel columns, channels for TOPI's NHWC blocks, whose names say ``nhwc``):
  a 1×1 window is a **pointwise** convolution, one input channel per output a **depthwise** one,
  anything else a full **conv**;
* two inputs and one reduction axis: a matrix product, the **dense** layer;
* one input reduced over two spatial axes: **pool**;
* no reduction: **other** (elementwise, layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from tvmc_mobilenet.errors import BadInputError

if TYPE_CHECKING:
    import tvm


class TaskKind(str, Enum):
    DEPTHWISE = "depthwise"
    POINTWISE = "pointwise"
    CONV = "conv"
    DENSE = "dense"
    POOL = "pool"
    OTHER = "other"


@dataclass(frozen=True)
class Task:
    """One distinct kernel of a model and what tuning needs to know about it."""

    name: str
    kind: TaskKind
    shape: str
    #: Floating-point operations of one call (MetaSchedule's estimate).
    flops: float
    #: How many times the model calls it.
    weight: int
    #: The MetaSchedule ExtractedTask (its ``dispatched[0]`` is the kernel's IRModule).
    extracted: Any

    @property
    def mod(self) -> tvm.IRModule:
        return self.extracted.dispatched[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "shape": self.shape,
            "flops": self.flops,
            "weight": self.weight,
            "space": self.space,
        }

    @property
    def space(self) -> str:
        """The design space MetaSchedule tunes this task in: one of ours, or ``generic``."""
        from tvmc_mobilenet.schedules import design_space_of

        (func,) = self.mod.functions.values()
        return design_space_of(func)


def extract_tasks(fused: tvm.IRModule, target: tvm.target.Target) -> list[Task]:
    """The tuning tasks of a legalised, fused module (see ``passes.legalize_and_fuse``)."""
    from tvm.s_tir import analysis
    from tvm.s_tir import meta_schedule as ms

    tasks = []
    for extracted in ms.relax_integration.extract_tasks(fused, target):
        mod = extracted.dispatched[0]
        kind, shape = classify(mod)
        tasks.append(Task(extracted.task_name, kind, shape, float(analysis.estimate_tir_flops(mod)), int(extracted.weight), extracted))
    return tasks


def classify(mod: tvm.IRModule) -> tuple[TaskKind, str]:
    """(kind, a short shape description) of a single-kernel IRModule."""
    from tvm import tirx
    from tvm.s_tir import analysis

    anchor = analysis.find_anchor_sblock(mod)
    func = next(f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc))
    out_shape = [int(d) for d in func.params[-1].shape]
    if anchor is None:
        return TaskKind.OTHER, "×".join(map(str, out_shape))
    spatial = [int(iv.dom.extent) for iv in anchor.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    reduce = [int(iv.dom.extent) for iv in anchor.iter_vars if iv.iter_type == tirx.IterVar.CommReduce]
    inputs = {region.source.name for region in anchor.reads}
    if len(inputs) >= 2 and len(reduce) == 3 and len(spatial) == 4:
        data_shape = [int(d) for d in func.params[0].shape]
        if "nhwc" in anchor.name_hint:  # TOPI's conv2d_nhwc / group_conv2d_nhwc blocks
            kh, kw, in_channels_per_group = reduce
            n, out_h, out_w, out_c = spatial
            in_c, in_h = (data_shape[3], data_shape[1]) if len(data_shape) == 4 else (in_channels_per_group, out_h)
        else:
            in_channels_per_group, kh, kw = reduce
            n, out_c, out_h, out_w = spatial
            in_c, in_h = (data_shape[1], data_shape[2]) if len(data_shape) == 4 else (in_channels_per_group, out_h)
        stride = max(1, round(in_h / out_h))
        if kh == kw == 1:
            kind = TaskKind.POINTWISE
        elif in_channels_per_group == 1 and in_c > 1:
            kind = TaskKind.DEPTHWISE
        else:
            kind = TaskKind.CONV
        return kind, f"{n}×{in_c}×{in_h}×{in_h} → {out_c}×{out_h}×{out_w}, {kh}×{kw}/s{stride}"
    if len(inputs) >= 2 and len(reduce) == 1:
        return TaskKind.DENSE, f"{'×'.join(map(str, spatial))} · k{reduce[0]}"
    if len(inputs) == 1 and len(reduce) == 2:
        return TaskKind.POOL, f"{'×'.join(map(str, spatial))} over {reduce[0]}×{reduce[1]}"
    return TaskKind.OTHER, "×".join(map(str, out_shape))


def parse_task_filter(text: str) -> frozenset[TaskKind] | None:
    """``all`` → None (every task); ``depthwise,pointwise`` → those kinds."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if not words or words == ["all"]:
        return None
    kinds = set()
    for word in words:
        try:
            kinds.add(TaskKind(word))
        except ValueError:
            choices = ", ".join(["all", *(k.value for k in TaskKind)])
            raise BadInputError(f"unknown task kind {word!r} in --tasks; choose from: {choices}") from None
    return frozenset(kinds)
