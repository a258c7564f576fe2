"""Applying a MetaSchedule database at build time; reading one safely while a tune writes it."""

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import tvm
from tvm.s_tir import meta_schedule as ms

from tvmc_mobilenet.options import ModelOptions
from tvmc_mobilenet.build import BuildConfig, build_model
from tvmc_mobilenet.compiler.frontend import import_pytorch
from tvmc_mobilenet.tuning.tune import REPORT_FILE
from tvmc_mobilenet.compiler.passes import legalize_and_fuse, simplify_for_inference
from tvmc_mobilenet.tuning.database import RECORD_FILE, WORKLOAD_FILE, exclusive_lock, open_tuning_database
from tvmc_mobilenet.errors import TuningError
from tvmc_mobilenet.model.network import build_network
from tvmc_mobilenet.model.spec import ModelConfig
from tvmc_mobilenet.targets.registry import resolve_target

from tests.helpers import TINY


def _database_with_one_record(directory, record_target: str = "host"):
    """A real MetaSchedule JSON database holding one record: the depthwise conv, parallelised
    (the record says it was tuned for ``record_target``)."""
    directory.mkdir()
    config = ModelConfig(**TINY)
    target = resolve_target("host").tvm_target()
    fused = legalize_and_fuse(simplify_for_inference(import_pytorch(build_network(config), config.input_shape).mod), target)
    gvar = next(g for g, f in fused.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and "group_conv2d" in str(f))
    func = fused[gvar]
    kernel = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    sch = tvm.s_tir.Schedule(kernel)
    sch.parallel(sch.get_loops(sch.get_sblock("group_conv2d_nhwc"))[1])
    db = ms.database.JSONDatabase(
        path_workload=str(directory / WORKLOAD_FILE), path_tuning_record=str(directory / RECORD_FILE), allow_missing=True
    )
    workload = db.commit_workload(kernel)
    args = ms.arg_info.ArgInfo.from_prim_func(func)
    tuned_for = resolve_target(record_target).tvm_target()
    db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run_secs=[1e-4], target=tuned_for, args_info=args))
    return directory


def test_build_applies_the_database_and_records_it(tmp_path):
    db_dir = _database_with_one_record(tmp_path / "db")
    db_dir_files = {p.name: p.read_bytes() for p in db_dir.iterdir()}
    result = build_model(BuildConfig(model=ModelOptions(**TINY), tuning_db=db_dir, output=tmp_path / "m.tar"))
    tuning = result.manifest["tuning"]
    assert tuning["database"] == str(db_dir)
    assert tuning["sha256"] == open_tuning_database(db_dir).sha256()
    assert tuning["kernels_tuned"] == 1 and tuning["kernels_total"] > 20
    assert result.verification["status"] == "passed"
    assert {p.name: p.read_bytes() for p in db_dir.iterdir()} == db_dir_files  # read, never written


@pytest.mark.faults("bad_input")
def test_database_errors(tmp_path):
    with pytest.raises(TuningError, match=r"is not a directory"):
        open_tuning_database(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / WORKLOAD_FILE).write_text("")
    with pytest.raises(TuningError, match=r"lacks database_tuning_record.json; a MetaSchedule database"):
        open_tuning_database(tmp_path / "half")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / WORKLOAD_FILE).write_text("this is not json\n[1, 2]\n")
    (bad / RECORD_FILE).write_text("")
    with pytest.raises(TuningError, match=r"database_workload.json' has a malformed record at line 1; the file is damaged"):
        open_tuning_database(bad)
    (bad / WORKLOAD_FILE).write_text('["123", "not a workload"]\n')
    with pytest.raises(TuningError, match=r"cannot be read"):
        open_tuning_database(bad)


@pytest.mark.faults("fault")
def test_truncated_last_record_is_dropped_and_the_rest_kept(tmp_path, fault_ledger):
    db_dir = _database_with_one_record(tmp_path / "db")
    records = db_dir / RECORD_FILE
    complete = records.read_bytes()
    records.write_bytes(complete + complete[: len(complete) // 2])  # a second record, cut mid-write
    with pytest.warns(UserWarning, match=r"truncated record .* left it out and kept the 1 complete ones"):
        db = open_tuning_database(db_dir)  # a reader: the file stays as it is
    assert records.read_bytes() == complete + complete[: len(complete) // 2]
    fault_ledger.count_records(1, len(db.database.get_all_tuning_records()))
    assert len(db.database.get_all_tuning_records()) == 1
    with pytest.warns(UserWarning, match=r"truncated record .* dropped that line and kept the 1 complete ones"):
        db = open_tuning_database(db_dir, writer=True)  # the next tune repairs the file
    assert records.read_bytes() == complete and len(db.database.get_all_tuning_records()) == 1


@pytest.mark.faults("fault")
def test_record_missing_only_its_newline_is_kept(tmp_path):
    db_dir = _database_with_one_record(tmp_path / "db")
    records = db_dir / RECORD_FILE
    complete = records.read_bytes()
    records.write_bytes(complete.rstrip(b"\n"))
    assert len(open_tuning_database(db_dir).database.get_all_tuning_records()) == 1
    assert records.read_bytes() == complete.rstrip(b"\n")  # readers never write
    assert len(open_tuning_database(db_dir, writer=True).database.get_all_tuning_records()) == 1
    assert records.read_bytes() == complete


def test_create_makes_an_empty_database(tmp_path):
    db = open_tuning_database(tmp_path / "new" / "db", create=True)
    assert db.database.get_all_tuning_records() == []
    assert db.records_by_workload() == {}


@pytest.mark.faults("bad_input")
def test_records_for_another_target_are_refused(tmp_path):
    db_dir = _database_with_one_record(tmp_path / "db", record_target="rasp4b")
    with pytest.raises(TuningError, match=r"holds 1 record tuned for llvm .*cortex-a72.*, not for this build's target llvm"):
        build_model(BuildConfig(model=ModelOptions(**TINY), tuning_db=db_dir, output=tmp_path / "m.tar"))
    assert not (tmp_path / "m.tar").exists()


@pytest.mark.faults("fault")
def test_reading_while_a_tune_writes_takes_the_complete_records_and_changes_nothing(tmp_path, fault_ledger):
    """A tune holds the database's lock and is half-way through appending a record: a reader
    (a build) sees the complete records, without a warning, and leaves the writer's files alone."""
    db_dir = _database_with_one_record(tmp_path / "db")
    records = db_dir / RECORD_FILE
    complete = records.read_bytes()
    with exclusive_lock(db_dir):
        records.write_bytes(complete + complete[: len(complete) // 2])  # the write in progress
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing is dropped: the half line is not the reader's to judge
            db = open_tuning_database(db_dir)
        assert records.read_bytes() == complete + complete[: len(complete) // 2]
        seen = len(db.database.get_all_tuning_records())
        result = build_model(BuildConfig(model=ModelOptions(**TINY), tuning_db=db_dir, output=tmp_path / "m.tar"))
    fault_ledger.count_records(1, seen)
    assert seen == 1 and result.manifest["tuning"]["kernels_tuned"] == 1
    assert result.manifest["tuning"]["database"] == str(db_dir)


@pytest.mark.faults("fault")
@pytest.mark.timeout(600)
def test_builds_during_a_running_tune_each_see_a_consistent_database(tmp_path, fault_ledger):
    work = tmp_path / "db"
    script = str(Path(sys.executable).parent / "tvmc-mobilenet")
    tune = subprocess.Popen(
        [script, "tune", "-a", "0.25", "-r", "64", "--tasks", "pointwise", "--trials", "48", "--work-dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while not ((work / RECORD_FILE).exists() and (work / RECORD_FILE).read_bytes().count(b"\n") >= 1):
            assert tune.poll() is None, tune.stderr.read()[-2000:]
            assert time.time() < deadline, "the tune wrote no record in time"
            time.sleep(0.2)
        reads = []
        while tune.poll() is None and len(reads) < 200:
            reads.append(len(open_tuning_database(work).database.get_all_tuning_records()))
            if len(reads) == 1:  # and one whole build, applying what the tune has so far
                built = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=64), tuning_db=work, output=tmp_path / "m.tar"))
                assert built.verification["status"] == "passed" and built.manifest["tuning"]["kernels_tuned"] >= 1
        _, err = tune.communicate(timeout=300)
    finally:
        tune.kill()
    assert tune.returncode == 0, err[-2000:]
    assert reads, "the tune ended before the first read: give it more trials"
    assert reads == sorted(reads) and reads[0] >= 1  # every view complete, none going backwards
    final = len(open_tuning_database(work).database.get_all_tuning_records())
    fault_ledger.count_records(reads[-1], final)
    assert final == json.loads((work / REPORT_FILE).read_text())["trials_run"] >= 48  # every trial the tune ran


def test_default_database_for_another_cpu_is_passed_over_with_a_warning(tmp_path, monkeypatch):
    """The target's default database (a home directory shared with another machine, say) holding
    records for another CPU: the build says so and goes on untuned."""
    from tvmc_mobilenet.tuning.database import default_database_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    default = default_database_dir("host")
    default.parent.mkdir(parents=True)
    _database_with_one_record(default, record_target="rasp4b")
    lines = []
    result = build_model(BuildConfig(model=ModelOptions(**TINY), output=tmp_path / "m.tar"), log=lines.append)
    assert any(line.startswith("warning: tuning database") and "building untuned" in line for line in lines), lines
    assert result.manifest["tuning"]["database"] is None and result.verification["status"] == "passed"


def test_tuning_curve_replays_the_records_as_loaded(tmp_path):
    from tvmc_mobilenet.tuning.database import tuning_curve

    db = open_tuning_database(_database_with_one_record(tmp_path / "db"))
    (record,) = db.database.get_all_tuning_records()
    key = int(record.workload.as_json()[0])
    assert tuning_curve(db, [(key, 2)]) == [(1, pytest.approx(2 * 1e-4 * 1e3))]  # Σ weight × best, in ms
    assert tuning_curve(db, [(key + 1, 1)]) == []  # another model's task: no trials of its own
