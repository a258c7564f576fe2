"""The CPU fallback schedule: parallel and vectorised, and numerically exact."""

import numpy as np
import pytest
import torch
import tvm
import tvm_ffi
from tvm import relax, tirx

from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule
from tvmc_mobilenet.schedules import default_schedule_pass
from tvmc_mobilenet.schedules.cpu.vector_unit import vector_lanes
from tvmc_mobilenet.targets.registry import resolve_target

TARGET = resolve_target("host").tvm_target()


def conv_bias_relu(n, c_in, c_out, size, kernel, stride, groups):
    """A Relax module computing relu(conv2d(x, w) + b), legalised and fused into one kernel."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n, c_in, size, size), "float32"))
    w = relax.Var("w", relax.TensorType((c_out, c_in // groups, kernel, kernel), "float32"))
    b = relax.Var("b", relax.TensorType((1, c_out, 1, 1), "float32"))
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w, strides=stride, padding=kernel // 2, groups=groups))
            y = bb.emit(relax.op.nn.relu(relax.op.add(y, b)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return legalize_and_fuse(bb.get(), TARGET)


CASES = [
    # (n, c_in, c_out, size, kernel, stride, groups): MobileNet layers at α = 0.25 and odd sizes
    pytest.param(1, 8, 16, 48, 1, 1, 1, id="pointwise"),
    pytest.param(1, 61, 13, 7, 1, 1, 1, id="pointwise-odd-channels"),
    pytest.param(1, 16, 16, 48, 3, 1, 16, id="depthwise-s1"),
    pytest.param(1, 24, 24, 28, 3, 2, 24, id="depthwise-s2"),
    pytest.param(2, 3, 8, 96, 3, 2, 1, id="full-conv-s2-batch2"),
    pytest.param(1, 200, 200, 130, 3, 1, 200, id="depthwise-wide-rows"),
]


@pytest.mark.parametrize("n, c_in, c_out, size, kernel, stride, groups", CASES)
def test_numerics_match_pytorch(n, c_in, c_out, size, kernel, stride, groups):
    mod = conv_bias_relu(n, c_in, c_out, size, kernel, stride, groups)
    ex = tvm.compile(schedule(mod, TARGET), TARGET, relax_pipeline=lower(TARGET))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, size, size), dtype=np.float32)
    w = rng.standard_normal((c_out, c_in // groups, kernel, kernel), dtype=np.float32)
    b = rng.standard_normal((1, c_out, 1, 1), dtype=np.float32)
    out = vm["main"](*(tvm.runtime.tensor(a) for a in (x, w, b))).numpy()
    ref = torch.relu(
        torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=kernel // 2, groups=groups)
        + torch.from_numpy(b)
    ).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n, c_in, c_out, size, kernel, stride, groups", CASES[:4])
def test_kernels_are_parallel_and_vectorised(n, c_in, c_out, size, kernel, stride, groups):
    with TARGET:
        scheduled = default_schedule_pass(TARGET)(conv_bias_relu(n, c_in, c_out, size, kernel, stride, groups))
    kinds = set()
    for func in scheduled.functions.values():
        if isinstance(func, tirx.PrimFunc):
            assert func.attrs["tirx.is_scheduled"]

            tvm_ffi.structural_walk(func.body, [(tirx.For, lambda loop: kinds.add(loop.kind))], order="post")
    assert tirx.ForKind.PARALLEL in kinds
    assert tirx.ForKind.VECTORIZED in kinds


def test_vector_lanes_follow_the_target():
    assert vector_lanes(resolve_target("rasp4b").tvm_target()) == 4  # 128-bit NEON
    avx512 = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
    assert vector_lanes(avx512) == 16


@pytest.mark.parametrize(
    "extent, lanes, expected",
    [(56, 16, 56), (64, 16, 64), (1024, 16, 16), (1000, 16, 50), (1001, 16, 13), (127, 16, None), (4, 16, 4)],
)
def test_vector_width_of_an_innermost_loop(extent, lanes, expected):
    """Whole up to 64; else a multiple of the lanes; else the largest divisor from 8 to 64 (a
    softmax over 1,000 classes, 50 at a time); a prime extent is left scalar."""
    from tvmc_mobilenet.schedules.cpu.generic import _vector_width

    assert _vector_width(extent, lanes) == expected


def _softmax_module(classes: int):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, classes), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.softmax(x)))
        bb.emit_func_output(out)
    return legalize_and_fuse(bb.get(), TARGET)


@pytest.mark.parametrize("classes", [1000, 1001, 10, 4])
def test_a_softmax_is_vectorised_on_one_core_and_exact(classes):
    """The classifier's softmax: exp vectorised (TOPI's fast_softmax), max and sum reduced a
    vector at a time (rfactor), no parallel launch for so little work; within 2e-6 of the largest
    probability, as float32's own exp is, from logits of ±1 to ±50."""
    fused = _softmax_module(classes)
    with TARGET:
        scheduled = default_schedule_pass(TARGET)(fused)
    kinds, calls = set(), set()
    for func in scheduled.functions.values():
        if isinstance(func, tirx.PrimFunc):
            tvm_ffi.structural_walk(func.body, [(tirx.For, lambda loop: kinds.add(loop.kind))], order="post")
            tvm_ffi.structural_walk(func.body, [(tvm.ir.Call, lambda call: calls.add(getattr(call.op, "name", None)))], order="post")
    assert "tirx.exp" not in calls
    assert tirx.ForKind.PARALLEL not in kinds
    assert (tirx.ForKind.VECTORIZED in kinds) == (classes >= 8)
    vm = relax.VirtualMachine(tvm.compile(schedule(fused, TARGET), TARGET, relax_pipeline=lower(TARGET)), tvm.cpu())
    rng = np.random.default_rng(classes)
    for scale in (1, 5, 20, 50):
        logits = (rng.standard_normal((1, classes)) * scale).astype(np.float32)
        out = vm["main"](tvm.runtime.tensor(logits)).numpy()
        exact = np.exp(logits.astype(np.float64) - logits.max())
        exact /= exact.sum()
        assert np.max(np.abs(out - exact)) <= 2e-6 * exact.max()
