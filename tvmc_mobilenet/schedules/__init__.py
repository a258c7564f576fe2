"""Default schedules: what a kernel gets when no tuning record exists for it.

Rules are DLight schedule rules, tried in order per kernel; the first that applies wins. Each
backend lists its rules in :data:`DEFAULT_RULES`, so adding a backend is adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tvmc_mobilenet.errors import TargetError

if TYPE_CHECKING:
    import tvm


def _cpu_rules() -> list:
    """ParallelVectorize for every kernel.

    DLight's ``cpu.GEMV`` is not used: on MobileNet it claims only 1×1 convolutions on a 1×1
    feature map (resolution 32), which it schedules as 128 vector lanes around an unrolled
    reduction (LLVM took over ten minutes on one such kernel), and it asserts on others.
    """
    from tvmc_mobilenet.schedules.cpu.generic import ParallelVectorize

    return [ParallelVectorize()]


#: Target kind → the default rules for it, in priority order.
DEFAULT_RULES: dict[str, Callable[[], list]] = {"llvm": _cpu_rules}


def default_schedule_pass(target: tvm.target.Target) -> tvm.transform.Pass:
    """The pass that schedules every kernel not already scheduled (e.g. by a tuning record)."""
    from tvm.s_tir import dlight

    kind = target.kind.name
    if kind not in DEFAULT_RULES:
        raise TargetError(f"no default schedules for TVM target kind {kind!r}; supported: {', '.join(DEFAULT_RULES)}")
    return dlight.ApplyDefaultSchedule(*DEFAULT_RULES[kind]())
