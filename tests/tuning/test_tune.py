"""`tvmc-mobilenet tune` end to end: a real (short) MetaSchedule tune, then a build that uses it.

The tunes here are small (α=0.25 at 64×64, a few dozen trials) but real: candidates are built,
run and timed on this machine. Interrupted runs are real processes that get SIGINT or SIGKILL.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tvmc_mobilenet.options import ModelOptions, TargetOptions
from tvmc_mobilenet.cli import main
from tvmc_mobilenet.build import BuildConfig, build_model
from tvmc_mobilenet.tuning.tune import REPORT_FILE, TuneConfig, tune_model
from tvmc_mobilenet.tuning.database import RECORD_FILE, default_database_dir, exclusive_lock, open_tuning_database
from tvmc_mobilenet.errors import BadInputError, TargetError, TuningError

SMALL = ["--alpha", "0.25", "--resolution", "64"]
SCRIPT = str(Path(sys.executable).parent / "tvmc-mobilenet")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache directory, so that the default (per-target) database starts empty."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield Path(os.environ["XDG_CACHE_HOME"])
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="module")
def builder_tmp(tmp_path_factory):
    """The temporary directory the tune's builder workers (new processes) write candidates into."""
    return tmp_path_factory.mktemp("builder-tmp")


@pytest.fixture(scope="module")
def tuned(cache, builder_tmp):
    """`tune --trials 64` into the host's default database, through the CLI."""
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(builder_tmp)
    try:
        code = main(["tune", *SMALL, "--trials", "64", "--seed", "1"])
    finally:
        if previous is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = previous
    assert code == 0
    return default_database_dir("host")


def records(directory: Path) -> int:
    return sum(1 for line in (directory / RECORD_FILE).read_text().splitlines() if line.strip())


def test_tune_measures_every_task_and_reports(tuned):
    assert tuned == Path(os.environ["XDG_CACHE_HOME"]) / "tvmc-mobilenet" / "tuning" / "host"
    report = json.loads((tuned / REPORT_FILE).read_text())
    assert report["trials_requested"] == 64 and report["trials_run"] == 64 and report["trials_before"] == 0
    assert records(tuned) == 64
    assert report["model"]["name"] == "mobilenet_v1_0.25_64"
    assert all(task["trials"] >= 1 for task in report["tasks"])  # no task left untuned
    assert {t["kind"] for t in report["tasks"]} == {"conv", "depthwise", "pointwise", "dense", "pool"}
    assert report["skipped"] and report["skipped"][0]["kind"] == "other"  # the reshape: nothing to tune
    assert report["estimated_latency_ms"] > 0 and report["trials_per_minute"] > 0
    assert report["curve"][-1]["trials"] == 64
    assert report["time_breakdown_s"]["SendToBuilder"] > 0


def test_tune_leaves_no_candidate_libraries_behind(tuned, builder_tmp):
    """Every candidate built (the search's and the default schedules') is deleted once measured."""
    assert not list(builder_tmp.glob("tvmc-mobilenet-candidate-*"))


def test_build_applies_the_default_database(tuned, tmp_path):
    result = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=64), output=tmp_path / "m.tar"))
    tuning = result.manifest["tuning"]
    assert tuning["database"] == str(tuned)
    report = json.loads((tuned / REPORT_FILE).read_text())
    assert tuning["kernels_tuned"] == len(report["tasks"])  # every tuned task found its records
    assert result.verification["status"] == "passed"  # tuned kernels still agree with PyTorch
    untuned = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=64), no_tuning_db=True, output=tmp_path / "u.tar"))
    assert untuned.manifest["tuning"]["database"] is None


def test_rerun_continues_instead_of_starting_over(tuned):
    again = tune_model(TuneConfig(model=ModelOptions(alpha=0.25, resolution=64), trials=64))
    assert again.trials_before == 64 and again.trials_run == 0
    assert records(tuned) == 64


@pytest.mark.faults("fault")
def test_second_tune_on_the_same_database_is_refused(tmp_path):
    open_tuning_database(tmp_path, create=True)
    with exclusive_lock(tmp_path):
        with pytest.raises(TuningError, match=r"is in use by a running tune \(pid \d+\)"):
            tune_model(TuneConfig(model=ModelOptions(alpha=0.25, resolution=64), trials=8, work_dir=tmp_path))


def _start_tune(work_dir: Path, trials: int) -> subprocess.Popen:
    return subprocess.Popen(
        [SCRIPT, "tune", *SMALL, "--tasks", "pointwise", "--trials", str(trials), "--work-dir", str(work_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_records(work_dir: Path, proc: subprocess.Popen, at_least: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (work_dir / RECORD_FILE).exists() and records(work_dir) >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError(f"tune exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("no records appeared in time")


@pytest.mark.faults("fault")
def test_ctrl_c_stops_after_the_batch_and_keeps_every_record(tmp_path, fault_ledger):
    proc = _start_tune(tmp_path, 200)
    _wait_for_records(tmp_path, proc, 1)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "stopping after the batch in flight" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: tuning interrupted after") and "a rerun continues from there" in last
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    fault_ledger.count_records(report["trials_run"], len(open_tuning_database(tmp_path).database.get_all_tuning_records()))
    assert report["interrupted"] and report["trials_run"] == records(tmp_path) < 200
    assert len(open_tuning_database(tmp_path).database.get_all_tuning_records()) == records(tmp_path)


@pytest.mark.faults("fault")
def test_killed_tune_is_resumed_to_the_requested_total(tmp_path, fault_ledger):
    proc = _start_tune(tmp_path, 24)
    _wait_for_records(tmp_path, proc, 2)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(timeout=30)
    with open(tmp_path / RECORD_FILE, "a") as f:  # and a write cut short, as a kill can leave
        f.write('[0, [[["GetSBlock", [], ["conv2d')
    kept = records(tmp_path) - 1
    with pytest.warns(UserWarning, match=r"truncated record"):
        result = tune_model(
            TuneConfig(model=ModelOptions(alpha=0.25, resolution=64), tasks="pointwise", trials=24, work_dir=tmp_path, resume=True)
        )
    fault_ledger.count_records(kept, result.trials_before)
    assert result.trials_before == kept >= 2
    assert result.trials_before + result.trials_run == 24 == records(tmp_path)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(trials=0), BadInputError, r"--trials must be a positive integer, got 0"),
        (dict(timeout=0), BadInputError, r"--timeout must be between 1 and 3600 seconds"),
        (dict(tasks="winograd"), BadInputError, r"unknown task kind 'winograd'"),
        (dict(target=TargetOptions("rasp4b")), TargetError, r"measured on the device itself: give --rpc-tracker"),
        (dict(target=TargetOptions("jetson-orin-nano")), TargetError, r"measured on the device itself: .*--rpc-key jetson-orin-nano"),
        (dict(resume=True), TuningError, r"--resume: there is no earlier tune in .* to continue"),
    ],
)
@pytest.mark.faults("bad_input")
def test_bad_tune_options(kwargs, error, message, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.environ["PATH"] + os.pathsep + str(tmp_path))
    with pytest.raises(error, match=message):
        tune_model(TuneConfig(model=ModelOptions(alpha=0.25, resolution=64), work_dir=tmp_path / "db", **kwargs))


def test_metaschedule_logging_tolerates_handlers_attached_by_others(tmp_path):
    """An unnamed handler on MetaSchedule's logger (pytest attaches one to every logger that does
    not propagate) made MetaSchedule's own logging set-up fail; it is set aside and given back."""
    import logging

    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir

    from tvmc_mobilenet.tuning.tune import _foreign_log_handlers_set_aside

    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    foreign = logging.NullHandler()  # no name
    ms_logger.addHandler(foreign)
    try:
        with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'format'"):
            get_loggers_from_work_dir(str(tmp_path), ["task"])
        with _foreign_log_handlers_set_aside():
            get_loggers_from_work_dir(str(tmp_path), ["task"])
        assert foreign in ms_logger.handlers
        assert (tmp_path / "logs").is_dir()
    finally:
        ms_logger.removeHandler(foreign)


def test_tuning_starts_from_our_default_schedules(tmp_path):
    """Each kernel gets its default schedule measured as its first record, so a tuned build never
    applies a schedule slower than the untuned build's (small budgets included)."""
    from tvmc_mobilenet.tuning.database import open_tuning_database, workload_key

    result = tune_model(TuneConfig(model=ModelOptions(alpha=0.25, resolution=32), trials=30, work_dir=tmp_path / "db", search_seed=3))
    assert result.trials_run == 30
    assert all(outcome.trials >= 1 for outcome in result.outcomes)
    records = open_tuning_database(tmp_path / "db").database.get_all_tuning_records()
    unsampled = {}
    for record in records:
        if not any(inst.kind.name.startswith("Sample") for inst in record.trace.insts):
            unsampled.setdefault(workload_key(record.workload.mod), []).append(float(record.run_secs[0]))
    assert len([o for o in result.outcomes if o.task.space != "generic"]) == 18
    for outcome in result.outcomes:  # ours and the generic space's: every task starts from its default
        defaults = unsampled.get(workload_key(outcome.task.mod))
        assert defaults, f"{outcome.task.name}: no measured default schedule"
        assert outcome.best_seconds <= min(defaults)


def test_a_default_schedule_that_repacks_its_weight_in_place_is_measured(tmp_path):
    """The int8 first convolution's default schedule (a dot-product tile) repacks the weight
    parameter in place: at α 0.25 (then on the 256-bit dot product; its 8 channels are padded to
    16 now) measured with the task's own argument shapes it failed (a shape mismatch), and the
    tune then kept a generic schedule twice as slow as the untuned build's. Measured with the
    scheduled kernel's arguments, it is the first record."""
    from tvmc_mobilenet.tuning.database import FAILED_RUN_RECORD_SECONDS, open_tuning_database, workload_key

    model = ModelOptions(alpha=0.25, resolution=32, quantize="int8")
    result = tune_model(TuneConfig(model=model, trials=2, tasks="conv", work_dir=tmp_path / "db", search_seed=1))
    (conv,) = result.outcomes
    records = [r for r in open_tuning_database(tmp_path / "db").database.get_all_tuning_records() if workload_key(r.workload.mod) == workload_key(conv.task.mod)]
    defaults = [float(r.run_secs[0]) for r in records if not any(inst.kind.name.startswith("Sample") for inst in r.trace.insts)]
    assert defaults and max(defaults) < FAILED_RUN_RECORD_SECONDS / 2, "the default schedule's measurement failed"
    assert conv.best_seconds <= min(defaults)


def test_int8_tune_searches_our_dot_product_space_and_the_build_stays_exact(tmp_path):
    """`tune --quantize int8`: the pointwise kernels and the first convolution are tuned in our
    dot-product space (schedules/cpu/conv_dot.py) — every record of theirs is a register tile of
    the host's int8 dot-product intrinsic — and the build that applies them equals the integer
    reference exactly."""
    from tvmc_mobilenet.schedules import POINTWISE_SPACE
    from tvmc_mobilenet.schedules.cpu.conv_dot import dot_product_of
    from tvmc_mobilenet.targets.registry import resolve_target

    dot = dot_product_of(resolve_target("host").tvm_target())
    if dot is None:
        pytest.skip("this CPU has no int8 dot-product instruction our kernels use")
    model = ModelOptions(alpha=0.5, resolution=32, quantize="int8")
    result = tune_model(TuneConfig(model=model, trials=24, tasks="conv,pointwise", work_dir=tmp_path / "db", search_seed=2))
    assert {o.task.kind.value for o in result.outcomes} == {"conv", "pointwise"}
    assert all(o.task.space == POINTWISE_SPACE for o in result.outcomes)  # the first conv too, not the generic space
    _assert_every_record_uses_and_the_build_is_exact(result, dot.intrinsic, model, tmp_path)


def test_int8_tune_searches_the_depthwise_column_space_and_the_build_stays_exact(tmp_path):
    """`tune --quantize int8` on a CPU with vpdpbusd: the depthwise kernels (4 kernel rows, see
    schedules/cpu/depthwise_dot.py) are tuned in the column dot product's space — every record is
    a tile of its intrinsic — and the build that applies them equals the integer reference."""
    from tvmc_mobilenet.schedules import DEPTHWISE_SPACE
    from tvmc_mobilenet.schedules.cpu.depthwise_dot import COLUMN_DOT_PRODUCTS
    from tvmc_mobilenet.targets.registry import resolve_target

    host = resolve_target("host").tvm_target()
    dot = next((d for d in COLUMN_DOT_PRODUCTS if d.available(host) and d.lanes == 16), None)
    if dot is None:
        pytest.skip("this CPU has no AVX-512 VNNI for the depthwise column dot product")
    model = ModelOptions(alpha=0.5, resolution=32, quantize="int8")  # 16 to 512 channels: every layer fills the vectors
    result = tune_model(TuneConfig(model=model, trials=16, tasks="depthwise", work_dir=tmp_path / "db", search_seed=4))
    assert result.outcomes and all(o.task.space == DEPTHWISE_SPACE for o in result.outcomes)
    _assert_every_record_uses_and_the_build_is_exact(result, dot.depthwise_intrinsic, model, tmp_path)


def _assert_every_record_uses_and_the_build_is_exact(result, intrinsic: str, model: ModelOptions, tmp_path: Path) -> None:
    """Every record of the tune's tasks is a schedule calling ``intrinsic``, and the build that
    applies them equals the integer reference exactly."""
    from tvmc_mobilenet.tuning.database import workload_key

    ours = {workload_key(o.task.mod) for o in result.outcomes}
    tuned = [r for r in open_tuning_database(tmp_path / "db").database.get_all_tuning_records() if workload_key(r.workload.mod) in ours]
    assert len(tuned) >= len(ours)
    assert all(intrinsic in str(record.trace) for record in tuned)
    build = build_model(BuildConfig(model=model, tuning_db=tmp_path / "db", output=tmp_path / "q.tar"))
    assert build.manifest["tuning"]["kernels_tuned"] >= len(ours)
    assert build.verification["status"] == "passed" and build.verification["max_abs_error"] == 0
