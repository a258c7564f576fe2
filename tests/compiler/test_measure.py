"""The tuning builder: persistent workers, shared-library output, failures as failed trials."""

import os
import subprocess
import sys
import textwrap

import tvm
from tvm import te
from tvm.s_tir.meta_schedule.builder import BuilderInput

from tvmc_mobilenet.compiler.measure import persistent_builder

TARGET = tvm.target.Target({"kind": "llvm"})


def _kernel():
    a = te.placeholder((64,), name="a")
    b = te.compute((64,), lambda i: a[i] * 2.0, name="b")
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


def test_builds_loadable_shared_libraries_with_reused_workers():
    builder = persistent_builder(max_workers=1, timeout_sec=60)
    try:
        first = builder.build([BuilderInput(_kernel(), TARGET)])
        workers = [w._proc.pid for w in builder.pool._worker_map.values()]
        second = builder.build([BuilderInput(_kernel(), TARGET), BuilderInput(_kernel(), TARGET)])
        assert [w._proc.pid for w in builder.pool._worker_map.values()] == workers  # the same process
    finally:
        builder.shutdown()
    results = first + second
    assert all(r.error_msg is None for r in results)
    for r in results:
        assert r.artifact_path.endswith(".so") and os.path.exists(r.artifact_path)
        assert tvm.runtime.load_module(r.artifact_path) is not None
    assert len(workers) == 1


def test_a_build_past_its_timeout_is_a_failed_trial():
    builder = persistent_builder(max_workers=1, timeout_sec=0.001)
    try:
        (result,) = builder.build([BuilderInput(_kernel(), TARGET)])
    finally:
        builder.shutdown()
    assert result.artifact_path is None and "timed out" in result.error_msg


def test_cpu_intrinsics_without_the_other_backends():
    script = textwrap.dedent(
        """
        import sys, time
        import tvm
        from tvmc_mobilenet.compiler.measure import register_cpu_tensor_intrinsics
        start = time.time()
        register_cpu_tensor_intrinsics()
        import tvm.s_tir.tensor_intrin  # what MetaSchedule's TuneContext does
        from tvm.s_tir import TensorIntrin
        assert TensorIntrin.get("dot_16x4_vnni") is not None
        assert "tvm.s_tir.tensor_intrin.cuda" not in sys.modules
        print(time.time() - start)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip()) < 10  # the whole package takes ~23 s
