"""MetaSchedule design spaces per target: which space generator a tune searches.

Our pointwise and depthwise kernels are tuned in their own spaces (``ApplyCustomRule``, see
:func:`tvmc_mobilenet.schedules.register_design_spaces`); every other kernel gets MetaSchedule's
rules, which for LLVM targets are rebuilt here with bounded unrolling.
"""

from __future__ import annotations


#: Explicit-unroll limits the CPU search may choose. MetaSchedule's default adds 512, and on this
#: machine a depthwise candidate with a 56-lane vector unrolled 512 times took over 2 minutes to
#: compile (LLVM on a single huge block, with AVX2 as with AVX-512), against 10 s at 64 and 0.1-0.5 s
#: for ordinary candidates: such builds hit the builder timeout and were lost as trials.
CPU_UNROLL_STEPS = (0, 16, 64)


def design_space(target):
    """MetaSchedule's design space for the target: :func:`cpu_design_space` for LLVM targets, its
    own defaults for CUDA (which include ``ApplyCustomRule``, hence our spaces)."""
    return cpu_design_space() if target.kind.name == "llvm" else "post-order-apply"


def cpu_design_space():
    """MetaSchedule's design space for LLVM targets, with the unroll limits above.

    Every rule, postprocessor and mutator is MetaSchedule's default for ``llvm``; only the
    ParallelizeVectorizeUnroll rule is rebuilt with :data:`CPU_UNROLL_STEPS`.
    """
    from tvm.s_tir import meta_schedule as ms

    rules = []
    for rule in ms.ScheduleRule.create("llvm"):
        if isinstance(rule, ms.schedule_rule.ParallelizeVectorizeUnroll):
            rule = ms.schedule_rule.ParallelizeVectorizeUnroll(
                max_jobs_per_core=16, max_vectorize_extent=64, unroll_max_steps=list(CPU_UNROLL_STEPS), unroll_explicit=True
            )
        rules.append(rule)
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=ms.Postproc.create("llvm"), mutator_probs=ms.Mutator.create("llvm"))
