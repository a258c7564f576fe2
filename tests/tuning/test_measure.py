"""The tuning builder: persistent workers, shared-library output, failures as failed trials."""

import hashlib
import os
import subprocess
import sys
import textwrap
import time

import pytest
import tvm
from tvm import te
from tvm.s_tir.meta_schedule.builder import BuilderInput

from tvmc_mobilenet.options import ModelOptions
from tvmc_mobilenet.tuning import measure
from tvmc_mobilenet.tuning.measure import build_and_export, persistent_builder

TARGET = tvm.target.Target({"kind": "llvm"})


def _kernel(name: str = "a"):
    a = te.placeholder((64,), name=name)
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
        from tvmc_mobilenet.schedules.intrinsics import register_cpu_tensor_intrinsics
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


def crash_or_hang_when_named(mod, target, cross_compiler=None, cuda_compiler=None):
    """Runs in a builder worker (the tests patch it in for ``build_and_export``)."""
    script = mod.script()
    if "crash_me" in script:
        os._exit(3)  # a worker dying as a segfaulting compiler would
    if "hang_me" in script:
        time.sleep(3600)
    return build_and_export(mod, target, cross_compiler, cuda_compiler)


@pytest.mark.faults("fault")
@pytest.mark.timeout(180)  # the hung build must time out after 10 s, not hold the builder
def test_a_crashed_or_hung_worker_fails_its_trial_and_the_next_build_works(monkeypatch):
    monkeypatch.setattr(measure, "build_and_export", crash_or_hang_when_named)
    builder = persistent_builder(max_workers=1, timeout_sec=10)
    try:
        crashed, hung, fine = builder.build([BuilderInput(_kernel(n), TARGET) for n in ("crash_me", "hang_me", "a")])
        again = builder.build([BuilderInput(_kernel(), TARGET)])
    finally:
        builder.shutdown()
    assert crashed.artifact_path is None and crashed.error_msg.startswith("build failed")
    assert hung.artifact_path is None and "timed out after 10 s" in hung.error_msg
    assert fine.error_msg is None and again[0].error_msg is None and os.path.exists(again[0].artifact_path)


def crash_or_hang_sometimes(mod, target, cross_compiler=None, cuda_compiler=None):
    """A quarter of the candidates crash their worker and a quarter hang past the timeout."""
    kind = hashlib.sha256(mod.script().encode()).digest()[0] % 4
    if kind == 0:
        os._exit(3)
    if kind == 1:
        time.sleep(3600)
    return build_and_export(mod, target, cross_compiler, cuda_compiler)


@pytest.mark.faults("fault")
@pytest.mark.timeout(900)
def test_tune_goes_on_through_crashing_and_hanging_build_workers(monkeypatch, tmp_path, fault_ledger):
    from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model
    from tvmc_mobilenet.tuning.database import FAILED_RUN_SECONDS, RECORD_FILE, open_tuning_database

    monkeypatch.setattr(measure, "build_and_export", crash_or_hang_sometimes)
    work = tmp_path / "db"
    # A replaced worker imports TVM within its first build's timeout: 10 s leaves room on a busy machine.
    result = tune_model(TuneConfig(model=ModelOptions(alpha=0.25, resolution=32), tasks="pointwise", trials=16, timeout=10, work_dir=work))
    assert result.trials_run == 16 and not result.interrupted
    written = (work / RECORD_FILE).read_bytes().count(b"\n")
    kept = open_tuning_database(work).database.get_all_tuning_records()
    fault_ledger.count_records(written, len(kept))
    assert len(kept) == written
    times = [max(float(s) for s in r.run_secs) for r in kept]
    assert any(t >= FAILED_RUN_SECONDS for t in times), "no trial failed: the fault was not injected"
    assert any(t < FAILED_RUN_SECONDS for t in times), "no trial survived the faults"
