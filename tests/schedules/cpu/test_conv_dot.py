"""The int8 dot-product schedule (schedules/cpu/conv_dot.py) on each instruction it supports."""

import re

import pytest
import tvm
from tvm import te, topi

from tvmc_mobilenet.schedules.cpu.conv_dot import AVX2, AVX_VNNI, SDOT, VNNI, ConvDot
from tvmc_mobilenet.targets.registry import resolve_target


def int8_pointwise(size: int, c_in: int, c_out: int, data_dtype: str) -> tvm.tirx.PrimFunc:
    """An int8 1×1 NHWC convolution with int32 accumulators and a requantizing epilogue, as the
    quantized graph's kernels are."""
    data = te.placeholder((1, size, size, c_in), data_dtype, name="data")
    weight = te.placeholder((1, 1, c_in, c_out), "int8", name="weight")
    scale = te.placeholder((c_out,), "float32", name="scale")
    acc = topi.nn.conv2d_nhwc(data, weight, 1, 0, 1, out_dtype="int32")
    out = te.compute(
        acc.shape,
        lambda n, h, w, f: te.max(te.min(te.round(acc[n, h, w, f].astype("float32") * scale[f]), 255.0), 0.0).astype("uint8"),
        name="requantize",
    )
    return te.create_prim_func([data, weight, scale, out])


@pytest.mark.parametrize(
    "dot, target",
    [
        (VNNI, '{"kind": "llvm", "mcpu": "znver4", "num-cores": 2}'),
        (SDOT, "rasp5"),
        (AVX_VNNI, '{"kind": "llvm", "mcpu": "alderlake", "num-cores": 2}'),
        (AVX2, '{"kind": "llvm", "mcpu": "haswell", "num-cores": 2}'),
    ],
    ids=lambda v: getattr(v, "name", None),
)
def test_tiles_are_tensorized_and_allocate_nothing_per_tile(dot, target):
    """The schedule takes the kernel and calls the instruction, and the body of its parallel tile
    loop allocates nothing: with an intrinsic whose implementation names a step (TVM's own sdot
    one does: ``vec_a = …``), each such value became a small workspace buffer, allocated and freed
    at every tile (that took 45 % of the 112×112×32 pointwise kernel's time on VNNI)."""
    tvm_target = resolve_target(target).tvm_target()
    func = int8_pointwise(28, 64, 64, dot.data_dtype)  # 3.2 M MACs: tiles run in parallel
    sch = ConvDot(dot).apply(func, tvm_target, False)
    assert sch is not None, f"{dot.name} did not take the kernel"
    scheduled = sch.mod["main"].with_attr("global_symbol", "main")
    assert "call_llvm_pure_intrin" in scheduled.script()
    llvm_ir = tvm.tirx.build(tvm.IRModule({"main": scheduled}), target=tvm_target).inspect_source("ll")
    # The body of the parallel loop: the function TVM's parallel launch calls in each task.
    (tile_loop,) = re.findall(r"define [^\n]*@__tvm_parallel_lambda[^\n]*\{\n.*?\n\}\n", llvm_ir, flags=re.S)
    assert "TVMBackendAllocWorkspace" not in tile_loop
