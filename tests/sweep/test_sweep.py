"""The α × resolution sweep on this host: files, table, plots, resume, tuning shared across models."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import pytest

from tvmc_mobilenet.model.accuracy import PAPER
from tvmc_mobilenet.options import TimingOptions
from tvmc_mobilenet.cli import main
from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.sweep.report import CSV_COLUMNS, PLOTS, pareto_front
from tvmc_mobilenet.sweep.results import BuiltModel, SweepConfig, SweepRow
from tvmc_mobilenet.sweep.run import run_sweep

PNG = b"\x89PNG\r\n\x1a\n"


def row(alpha, resolution, ms, top1) -> SweepRow:
    built = BuiltModel(alpha, resolution, "m", 1, 1, top1, PAPER, 0, 0, 0.0, 0.0, 0, 1, "a.tar")
    return SweepRow(**asdict(built), latency_median_ms=ms, latency_p90_ms=ms, throughput_per_s=1e3 / ms, gflops=1.0, verification="passed")


def test_pareto_front_keeps_models_nothing_beats_on_both():
    rows = [row(1, 224, 10, 70.6), row(0.75, 224, 6, 68.4), row(0.5, 224, 7, 63.7), row(0.25, 128, 1, 41.5)]
    assert [(r.alpha, r.resolution) for r in pareto_front(rows)] == [(0.25, 128), (0.75, 224), (1, 224)]


def test_host_sweep_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--alphas", "0.25", "--resolutions", "64,32", "--out", str(out), "--repeat", "2", "--number", "1", "--rounds", "3"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "mobilenet_v1_0.25_64" in printed.err and "report.md" in printed.out

    payload = json.loads((out / "sweep.json").read_text())
    assert [(r["alpha"], r["resolution"]) for r in payload["rows"]] == [(0.25, 64), (0.25, 32)]
    for r in payload["rows"]:
        assert r["latency_median_ms"] > 0 and r["gflops"] > 0 and r["verification"] == "passed on the target"
        assert r["top1"] is None  # 64 and 32 px are off the published grid
        assert len(r["latency_rounds_ms"]) == 3 and r["latency_median_ms"] == pytest.approx(min(r["latency_rounds_ms"]), abs=1e-4)
    with open(out / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == 2
    for file in PLOTS.values():
        assert (out / file).read_bytes().startswith(PNG)
    report = (out / "report.md").read_text()
    assert "| 0.25 | 64 |" in report and all(f"]({file})" in report for file in PLOTS.values())

    # The same command again: nothing rebuilt, every model measured again.
    before = (out / "artifacts" / "mobilenet_v1_0.25_64.tar").stat().st_mtime_ns
    assert main([*args[:-1], "1"]) == 0
    assert "built in an earlier run of this sweep, kept" in capsys.readouterr().err
    assert (out / "artifacts" / "mobilenet_v1_0.25_64.tar").stat().st_mtime_ns == before
    again = json.loads((out / "sweep.json").read_text())
    assert again["resumed_models"] == 2 and all(len(r["latency_rounds_ms"]) == 1 for r in again["rows"])


def test_tuned_sweep_tunes_shared_shapes_once(tmp_path):
    """Two models that differ only in width share no layer; two that differ in resolution share
    the classifier and more: the second model's budget counts records the first left."""
    result = run_sweep(
        SweepConfig(
            timing=TimingOptions(repeat=1, number=1, warmup=3),
            alphas=(0.25,),
            resolutions=(64, 32),
            trials_per_model=24,
            out=tmp_path / "s",
        )
    )
    first, second = result.rows
    assert first.trials_run > 0 and first.kernels_tuned > 0
    assert second.trials_reused > 0  # records of shapes the 64 px model already tuned
    t = result.transfer
    assert t["distinct_tasks"] < t["tasks_summed_over_models"]
    assert t["trials_reused_from_other_models"] == second.trials_reused + first.trials_reused
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["transfer"] == t


@pytest.mark.parametrize(
    "args, message",
    [
        (["--alphas", "1,x"], r"--alphas: 'x' is not a number"),
        (["--resolutions", "100"], r"resolution must be a multiple of 32"),
        (["--alphas", "1.5"], r"alpha must be a number in \(0, 1\]"),
        (["--trials-per-model", "-1"], r"--trials-per-model must be 0 \(untuned\) or a positive integer"),
        (["--rounds", "0"], r"--rounds"),
        (["--target", "rasp4b"], r"rasp4b models do not run on this machine: give --rpc-tracker"),
    ],
)
@pytest.mark.faults("bad_input")
def test_bad_sweep_options_are_one_line(tmp_path, capsys, args, message):
    import re

    code = main(["sweep", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert code in (2, 3), err
    assert re.search(message, err) and len(err.splitlines()) == 1, err


@pytest.mark.faults("bad_input")
def test_out_must_be_a_directory(tmp_path):
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(BadInputError, match="is a file; give a directory"):
        run_sweep(SweepConfig(alphas=(0.25,), resolutions=(32,), out=file))


@pytest.mark.faults("fault")
def test_interrupted_sweep_keeps_its_builds_and_resumes(tmp_path, monkeypatch):
    """Ctrl-C while the second model builds: the first model's build is on record, nothing is
    half-written, and the same sweep again builds only what is missing."""
    from tvmc_mobilenet import build

    real_build, calls = build.build_model, []

    def interrupted_on_the_second(config, *args, **kwargs):
        calls.append(config.model.resolution)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_build(config, *args, **kwargs)

    monkeypatch.setattr(build, "build_model", interrupted_on_the_second)
    out = tmp_path / "s"
    config = SweepConfig(timing=TimingOptions(repeat=1, number=1, warmup=3), alphas=(0.25,), resolutions=(64, 32), out=out, rounds=1)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config)
    assert [r["resolution"] for r in json.loads((out / "built.json").read_text())["rows"]] == [64]
    assert not (out / "sweep.json").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]

    result = run_sweep(config)
    assert calls == [64, 32, 32] and result.resumed == 1
    assert [(r.resolution, r.verification) for r in result.rows] == [(64, "passed on the target"), (32, "passed on the target")]


def test_int8_sweep_quantizes_every_model_and_keeps_it_apart(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--alphas", "0.25", "--resolutions", "32", "--out", str(out), "--repeat", "1", "--number", "1", "--rounds", "1"]
    assert main([*args, "--quantize", "int8"]) == 0
    payload = json.loads((out / "sweep.json").read_text())
    assert payload["config"]["quantize"] == "int8" and payload["identity"]["quantize"] == "int8"
    assert [r["name"] for r in payload["rows"]] == ["mobilenet_v1_0.25_32_int8"]
    assert (out / "artifacts" / "mobilenet_v1_0.25_32_int8.tar").is_file()
    capsys.readouterr()
    assert main(args) == 0  # the fp32 sweep in the same --out does not reuse the int8 build
    assert "other settings" in capsys.readouterr().err
    assert [r["name"] for r in json.loads((out / "sweep.json").read_text())["rows"]] == ["mobilenet_v1_0.25_32"]
