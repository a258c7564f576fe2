"""Our schedules, per backend: the convolution layout, default schedules and design spaces.

* :data:`CONV_LAYOUTS`: the layout every convolution is converted to before legalisation.
* :data:`DEFAULT_RULES`: DLight schedule rules, tried in order per kernel without a tuning
  record; the first that applies wins.
* :data:`DESIGN_SPACES`: MetaSchedule custom rules for the kernels we tune in our own space.

Adding a backend is adding entries here and files under ``schedules/<backend>/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tvmc_mobilenet.errors import TargetError

if TYPE_CHECKING:
    import tvm


def _cpu_rules() -> list:
    """Our int8 dot-product schedules (dense, then depthwise), our pointwise and depthwise
    schedules, ParallelVectorize for every other kernel.

    DLight's ``cpu.GEMV`` is not used: on MobileNet it claims only 1×1 convolutions on a 1×1
    feature map (resolution 32), which it schedules as 128 vector lanes around an unrolled
    reduction (LLVM took over ten minutes on one such kernel), and it asserts on others.
    """
    from tvmc_mobilenet.schedules.cpu.depthwise import Depthwise
    from tvmc_mobilenet.schedules.cpu.generic import ParallelVectorize
    from tvmc_mobilenet.schedules.cpu.pointwise import Pointwise
    from tvmc_mobilenet.schedules.cpu.conv_dot import DOT_PRODUCTS, ConvDot
    from tvmc_mobilenet.schedules.cpu.depthwise_dot import COLUMN_DOT_PRODUCTS, DepthwiseDot

    dot_rules = [*(ConvDot(dot) for dot in DOT_PRODUCTS), *(DepthwiseDot(dot) for dot in COLUMN_DOT_PRODUCTS)]
    return [*dot_rules, Pointwise(), Depthwise(), ParallelVectorize()]


def _cuda_rules() -> list:
    """Our pointwise and depthwise schedules, then DLight's GPU rules in TVM's own order (its CUDA
    pipeline's); Fallback binds threads to any kernel the others leave, so every kernel is valid
    GPU code."""
    from tvm.s_tir import dlight

    from tvmc_mobilenet.schedules.cuda.depthwise import GpuDepthwise
    from tvmc_mobilenet.schedules.cuda.pointwise import GpuPointwise

    dlight_rules = [dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(), dlight.gpu.GeneralReduction(), dlight.gpu.Fallback()]
    return [GpuPointwise(), GpuDepthwise(), *dlight_rules]


#: Target kind → (activation layout, weight layout) every convolution of the network is converted
#: to, once, before legalisation; the schedules of that backend are written for it.
CONV_LAYOUTS: dict[str, tuple[str, str]] = {"llvm": ("NHWC", "HWIO"), "cuda": ("NHWC", "HWIO")}

#: Target kind → the default rules for it, in priority order.
DEFAULT_RULES: dict[str, Callable[[], list]] = {"llvm": _cpu_rules, "cuda": _cuda_rules}


def default_schedule_pass(target: tvm.target.Target) -> tvm.transform.Pass:
    """The pass that schedules every kernel not already scheduled (e.g. by a tuning record)."""
    from tvm.s_tir import dlight

    kind = target.kind.name
    if kind not in DEFAULT_RULES:
        raise TargetError(f"no default schedules for TVM target kind {kind!r}; supported: {', '.join(DEFAULT_RULES)}")
    return dlight.ApplyDefaultSchedule(*DEFAULT_RULES[kind]())


def default_schedule(func, target: tvm.target.Target):
    """The traced schedule :func:`default_schedule_pass` gives one kernel (the first default rule
    that applies), or None when no rule applies."""
    for rule in DEFAULT_RULES.get(target.kind.name, list)():
        with target:
            sch = rule.apply(func, target, False)
        if sch is not None:
            return sch
    return None


def _cpu_spaces() -> dict[str, Callable]:
    from tvmc_mobilenet.schedules.cpu.depthwise import Depthwise
    from tvmc_mobilenet.schedules.cpu.pointwise import Pointwise
    from tvmc_mobilenet.schedules.cpu.conv_dot import ConvDot, dot_product_of, is_int8_conv_for
    from tvmc_mobilenet.schedules.cpu.depthwise_dot import COLUMN_DOT_PRODUCTS, DepthwiseDot
    from tvmc_mobilenet.schedules.nhwc import conv_nhwc_extents

    def pointwise_space(target):
        """int8 kernels on a CPU with a dot-product instruction get its space, the others the fp32 one."""
        dot, fp32 = dot_product_of(target), Pointwise().design_space(target)
        if dot is None:
            return fp32
        int8 = ConvDot(dot).design_space(target)
        return lambda sch, block: (int8 if is_int8_conv_for(dot, sch, block) else fp32)(sch, block)

    def depthwise_space(target):
        """int8 kernels with 4 kernel rows on a CPU with a depthwise dot product get its space
        (the first that takes the kernel's channels), the others the fp32 one."""
        rules = [DepthwiseDot(dot) for dot in COLUMN_DOT_PRODUCTS if dot.available(target)]
        spaces, fp32 = [(rule, rule.design_space(target)) for rule in rules], Depthwise().design_space(target)

        def apply(sch, block):
            conv = conv_nhwc_extents(sch, block)
            space = next((space for rule, space in spaces if rule.applies(sch, block, conv, target)), fp32)
            return space(sch, block)

        return apply

    return {POINTWISE_SPACE: pointwise_space, DEPTHWISE_SPACE: depthwise_space}


def _cuda_spaces() -> dict[str, Callable]:
    from tvmc_mobilenet.schedules.cuda.depthwise import GpuDepthwise
    from tvmc_mobilenet.schedules.cuda.pointwise import GpuPointwise

    return {POINTWISE_SPACE: GpuPointwise().design_space, DEPTHWISE_SPACE: GpuDepthwise().design_space}


#: Names of our design spaces, as the ``schedule_rule`` annotation of a kernel's convolution block.
POINTWISE_SPACE = "mobilenet_pointwise"
DEPTHWISE_SPACE = "mobilenet_depthwise"

#: Target kind → {design space name: factory(target) of the MetaSchedule custom rule}.
DESIGN_SPACES: dict[str, Callable[[], dict[str, Callable]]] = {"llvm": _cpu_spaces, "cuda": _cuda_spaces}


def annotate_design_spaces(target: tvm.target.Target) -> tvm.transform.Pass:
    """Mark each pointwise and depthwise convolution block with the design space that tunes it.

    MetaSchedule's ``ApplyCustomRule`` then hands such a block to our space (see
    :func:`register_design_spaces`) and its generic rules tune every other kernel. Build and tune
    both run this pass, so tuning records match the kernels a build looks up.
    """
    import tvm
    from tvm import s_tir, tirx

    from tvmc_mobilenet.schedules.nhwc import find_conv_nhwc

    kind = target.kind.name
    dense_int8 = _dense_int8_test(target)

    @tvm.transform.module_pass(opt_level=0, name="AnnotateDesignSpaces")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        if kind not in DESIGN_SPACES:
            return mod
        updates = {}
        for gvar, func in mod.functions.items():
            if not isinstance(func, tirx.PrimFunc):
                continue
            sch = s_tir.Schedule(func)
            found = find_conv_nhwc(sch)
            if found is None:
                continue
            block, conv = found
            space = POINTWISE_SPACE if conv.is_pointwise or dense_int8(sch, block, conv) else DEPTHWISE_SPACE if conv.is_depthwise else None
            if space is not None:
                sch.annotate(block, "schedule_rule", space)
                updates[gvar] = sch.mod["main"]
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod

    return _pass


def _dense_int8_test(target: tvm.target.Target) -> Callable:
    """``(sch, block, conv) -> bool``: whether a dense convolution other than a pointwise one (the
    int8 network's first) is one our dot-product space tunes on ``target``, so that it is tuned
    there rather than by MetaSchedule's generic rules."""
    if target.kind.name != "llvm":
        return lambda _sch, _block, _conv: False
    from tvmc_mobilenet.schedules.cpu.conv_dot import ConvDot, dot_product_of, is_int8_conv_for

    dot = dot_product_of(target)
    if dot is None:
        return lambda _sch, _block, _conv: False
    rule = ConvDot(dot)
    return lambda sch, block, conv: rule.matches(conv) and is_int8_conv_for(dot, sch, block)


def design_space_of(func) -> str:
    """The design space that tunes a kernel: one of ours, or MetaSchedule's generic one."""
    import tvm_ffi
    from tvm import s_tir

    found = []

    def visit(block) -> None:
        if block.annotations.get("schedule_rule"):
            found.append(str(block.annotations["schedule_rule"]))

    tvm_ffi.structural_walk(func.body, [(s_tir.SBlock, visit)], order="post")
    return next((name for name in found if name != "None"), "generic")


def register_design_spaces(target: tvm.target.Target, generic: bool = False) -> None:
    """Register our design spaces for ``target`` as MetaSchedule custom rules
    (``s_tir.meta_schedule.<target key>.<space name>``), replacing earlier registrations.

    With ``generic`` the rules only remove their annotation, so that MetaSchedule's generic rules
    (which skip annotated blocks) tune these kernels too: the baseline our spaces are compared with.
    """
    import tvm

    kind = target.kind.name
    if kind not in DESIGN_SPACES:
        return
    for name, factory in DESIGN_SPACES[kind]().items():
        rule = _leave_to_generic_rules if generic else factory(target)
        for key in target.keys:
            tvm.register_global_func(f"s_tir.meta_schedule.{key}.{name}", rule, override=True)


def _leave_to_generic_rules(sch, block):
    sch.unannotate(block, "schedule_rule")
    return [sch]
