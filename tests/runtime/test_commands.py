"""run and bench as library calls: typed results, the reference check, the JSON report."""

import json

import numpy as np
import pytest

from tvmc_mobilenet.errors import ArtifactError, VerificationError
from tvmc_mobilenet.options import TimingOptions
from tvmc_mobilenet.runtime.artifact import open_artifact, write_artifact
from tvmc_mobilenet.runtime.commands import BenchConfig, RunConfig, bench_artifact, load_artifact, run_artifact


def test_run_checks_the_reference_and_saves_logits(tiny_artifact, tmp_path):
    result = run_artifact(RunConfig(tiny_artifact, output_file=tmp_path / "logits.npy", top=3))
    assert result.comparison is not None and result.comparison.passed
    assert len(result.classes) == 1 and len(result.classes[0]) == 3
    logits = np.load(tmp_path / "logits.npy")
    assert result.classes[0][0][0] == int(np.argmax(logits[0]))


def test_run_of_another_input_is_not_compared(tiny_artifact, tmp_path):
    data = np.zeros(open_artifact(tiny_artifact).input_shape, dtype=np.float32)
    np.save(tmp_path / "x.npy", data)
    assert run_artifact(RunConfig(tiny_artifact, input_file=tmp_path / "x.npy")).comparison is None


def test_bench_times_profiles_and_writes_its_report(tiny_artifact, tmp_path):
    config = BenchConfig(tiny_artifact, timing=TimingOptions(repeat=2, number=1, warmup=0), profile=True, json_file=tmp_path / "b.json")
    result = bench_artifact(config)
    assert result.where == "local" and result.stats.repeat == 2 and result.comparison.passed
    assert result.profile and abs(sum(r.share for r in result.profile) - 100.0) < 1e-6
    assert json.loads((tmp_path / "b.json").read_text())["latency"]["repeat"] == 2
    assert result.images_per_second > 0
    assert load_artifact(tiny_artifact).where == "local"


@pytest.mark.faults("bad_input")
def test_bench_profile_needs_the_kernel_table(artifact_copy):
    art = open_artifact(artifact_copy)
    manifest = dict(art.manifest)
    del manifest["kernels"]
    write_artifact(artifact_copy, manifest, {k: v for k, v in art.members.items() if k != "manifest.json"})
    with pytest.raises(ArtifactError, match="no kernel table"):
        bench_artifact(BenchConfig(artifact_copy, profile=True))


@pytest.mark.faults("fault")
def test_a_wrong_reference_fails_bench(artifact_copy):
    art = open_artifact(artifact_copy)
    members = {k: v for k, v in art.members.items() if k != "manifest.json"}
    from tvmc_mobilenet.runtime.artifact import REFERENCE_OUTPUT, npy_bytes

    members[REFERENCE_OUTPUT] = npy_bytes(art.reference_output() + 1.0)
    write_artifact(artifact_copy, art.manifest, members)
    with pytest.raises(VerificationError, match="differs from the reference"):
        bench_artifact(BenchConfig(artifact_copy, timing=TimingOptions(repeat=1, number=1, warmup=0)))
