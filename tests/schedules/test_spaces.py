"""The design space a tune searches: MetaSchedule's rules, with bounded unrolling on CPUs."""

import tvm
from tvm.s_tir import meta_schedule as ms

from tvmc_mobilenet.schedules.spaces import CPU_UNROLL_STEPS, cpu_design_space, design_space


def test_cpu_space_is_metaschedules_with_bounded_unrolls():
    space = cpu_design_space()
    rules = space.sch_rules
    stock = ms.ScheduleRule.create("llvm")
    assert [type(r) for r in rules] == [type(r) for r in stock]  # same rules, same order
    assert sum(isinstance(r, ms.schedule_rule.ParallelizeVectorizeUnroll) for r in rules) == 1  # the one rebuilt
    assert max(CPU_UNROLL_STEPS) == 64  # not MetaSchedule's 512: such candidates took minutes to compile


def test_cuda_uses_metaschedules_own_space():
    assert design_space(tvm.target.Target({"kind": "cuda", "arch": "sm_87"})) == "post-order-apply"
    assert isinstance(design_space(tvm.target.Target({"kind": "llvm"})), ms.space_generator.PostOrderApply)
