"""One MobileNet layer as a fused kernel, compiled and checked against PyTorch, for schedule tests."""

from __future__ import annotations

import re

import numpy as np
import torch
import tvm
from tvm import relax

from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule
from tvmc_mobilenet.targets.registry import resolve_target

HOST = resolve_target("host").tvm_target()
RASP4B = resolve_target("rasp4b").tvm_target()


class Layer:
    """relu(conv2d(x, W) + b) with constant W and b, as a network layer is (NCHW at the input)."""

    def __init__(self, n, c_in, c_out, size, kernel, stride, groups, seed=0):
        rng = np.random.default_rng(seed)
        self.stride, self.groups, self.padding = stride, groups, kernel // 2
        self.x = rng.standard_normal((n, c_in, size, size), dtype=np.float32)
        self.w = rng.standard_normal((c_out, c_in // groups, kernel, kernel), dtype=np.float32)
        self.b = rng.standard_normal((1, c_out, 1, 1), dtype=np.float32)

    def relax_module(self) -> tvm.IRModule:
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType(self.x.shape, "float32"))
        with bb.function("main", [x]):
            with bb.dataflow():
                conv = relax.op.nn.conv2d(x, relax.const(self.w), strides=self.stride, padding=self.padding, groups=self.groups)
                y = bb.emit(relax.op.nn.relu(relax.op.add(conv, relax.const(self.b))))
                out = bb.emit_output(y)
            bb.emit_func_output(out)
        return bb.get()

    def fused(self, target: tvm.target.Target = HOST) -> tvm.IRModule:
        return legalize_and_fuse(self.relax_module(), target)

    def conv_kernel(self, target: tvm.target.Target = HOST) -> tvm.tirx.PrimFunc:
        """The fused conv + bias + ReLU kernel (before scheduling)."""
        fused = self.fused(target)
        (func,) = [f for gv, f in fused.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint]
        return func

    def reference(self) -> np.ndarray:
        out = torch.nn.functional.conv2d(
            torch.from_numpy(self.x), torch.from_numpy(self.w), stride=self.stride, padding=self.padding, groups=self.groups
        )
        return torch.relu(out + torch.from_numpy(self.b)).numpy()

    def run_on_host(self) -> np.ndarray:
        ex = tvm.compile(schedule(self.fused(HOST), HOST), HOST, relax_pipeline=lower(HOST))
        vm = relax.VirtualMachine(ex, tvm.cpu())
        return vm["main"](tvm.runtime.tensor(self.x)).numpy()

    def assembly(self, target: tvm.target.Target) -> str:
        """Assembly of the scheduled conv kernel for ``target`` (e.g. rasp4b, cross-compiled)."""
        scheduled = schedule(self.fused(target), target)
        (name,) = [gv.name_hint for gv, f in scheduled.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint]
        lib = tvm.tirx.build(tvm.IRModule({name: scheduled[name].with_attr("global_symbol", name)}), target=target)
        return lib.inspect_source("asm")


def neon_fmla_count(assembly: str) -> int:
    """NEON single-precision vector fused multiply-adds (``fmla vD.4s, vN.4s, vM.4s`` or ``vM.s[i]``)."""
    return len(re.findall(r"\bfmla\s+v\d+\.4s", assembly))


def conv_kernel_of(mod: tvm.IRModule) -> tuple[str, tvm.tirx.PrimFunc]:
    (found,) = [(gv.name_hint, f) for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint]
    return found


def cuda_source(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> str:
    """CUDA source of one scheduled kernel, as TVM generates it for ``target``."""
    from tvmc_mobilenet.compiler.cuda_binary import keep_cuda_source

    with keep_cuda_source(target):
        lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    (device,) = [m for m in lib.imports if m.kind == "cuda"]
    return device.inspect_source()


def design_space_samples(func: tvm.tirx.PrimFunc, target: tvm.target.Target, count: int, seed: int = 1):
    """``count`` random schedules from the kernel's MetaSchedule design space (our custom rule for
    annotated kernels), each passed through the target's postprocessors as tuning would: returns
    (schedules that passed, how many were rejected), and the design space's trace."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    from tvmc_mobilenet.schedules.intrinsics import register_tensor_intrinsics
    from tvmc_mobilenet.schedules import register_design_spaces

    register_tensor_intrinsics(target)  # as tune does: MetaSchedule's CUDA rules look them up
    register_design_spaces(target)
    mod = tvm.IRModule({"main": func})
    context = ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply", task_name="kernel", rand_state=seed)
    (space,) = context.space_generator.generate_design_space(mod)
    passed, rejected = [], 0
    for i in range(count):
        sch = s_tir.Schedule(mod, seed=seed + i)
        space.trace.apply_to_schedule(sch, remove_postproc=True, decision_provider=lambda inst, inputs, attrs, decision: None)
        if all(postproc.apply(sch) for postproc in context.space_generator.postprocs):
            passed.append(sch)
        else:
            rejected += 1
    return passed, rejected, space.trace
