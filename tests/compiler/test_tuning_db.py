"""Applying a MetaSchedule database at build time."""

import pytest
import tvm
from tvm.s_tir import meta_schedule as ms

from tvmc_mobilenet.compiler.build import BuildConfig, build_model
from tvmc_mobilenet.compiler.frontend import import_pytorch
from tvmc_mobilenet.compiler.passes import legalize_and_fuse, simplify_for_inference
from tvmc_mobilenet.compiler.tuning_db import RECORD_FILE, WORKLOAD_FILE, open_tuning_database
from tvmc_mobilenet.errors import TuningError
from tvmc_mobilenet.model.network import build_network
from tvmc_mobilenet.model.spec import ModelConfig
from tvmc_mobilenet.targets.registry import resolve_target

from ..conftest import TINY


def _database_with_one_record(directory):
    """A real MetaSchedule JSON database holding one record: the depthwise conv, parallelised."""
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
    db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run_secs=[1e-4], target=target, args_info=args))
    return directory


def test_build_applies_the_database_and_records_it(tmp_path):
    db_dir = _database_with_one_record(tmp_path / "db")
    db_dir_files = {p.name: p.read_bytes() for p in db_dir.iterdir()}
    result = build_model(BuildConfig(**TINY, tuning_db=db_dir, output=tmp_path / "m.tar"))
    tuning = result.manifest["tuning"]
    assert tuning["database"] == str(db_dir)
    assert tuning["sha256"] == open_tuning_database(db_dir).sha256()
    assert tuning["kernels_tuned"] == 1 and tuning["kernels_total"] > 20
    assert result.verification["status"] == "passed"
    assert {p.name: p.read_bytes() for p in db_dir.iterdir()} == db_dir_files  # read, never written


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


def test_truncated_last_record_is_dropped_and_the_rest_kept(tmp_path):
    db_dir = _database_with_one_record(tmp_path / "db")
    records = db_dir / RECORD_FILE
    complete = records.read_bytes()
    records.write_bytes(complete + complete[: len(complete) // 2])  # a second record, cut mid-write
    with pytest.warns(UserWarning, match=r"truncated record .* dropped that line and kept the 1 complete ones"):
        db = open_tuning_database(db_dir)
    assert records.read_bytes() == complete
    assert len(db.database.get_all_tuning_records()) == 1


def test_record_missing_only_its_newline_is_kept(tmp_path):
    db_dir = _database_with_one_record(tmp_path / "db")
    records = db_dir / RECORD_FILE
    complete = records.read_bytes()
    records.write_bytes(complete.rstrip(b"\n"))
    assert len(open_tuning_database(db_dir).database.get_all_tuning_records()) == 1
    assert records.read_bytes() == complete


def test_create_makes_an_empty_database(tmp_path):
    db = open_tuning_database(tmp_path / "new" / "db", create=True)
    assert db.database.get_all_tuning_records() == []
    assert db.records_by_workload() == {}
