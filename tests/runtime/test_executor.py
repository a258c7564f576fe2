"""Running artifacts: with the TVM runtime alone, timing statistics, output checks."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tvmc_mobilenet.errors import ArtifactError, BadInputError
from tvmc_mobilenet.runtime.arrays import aligned, readable_in_place
from tvmc_mobilenet.runtime.artifact import open_artifact
from tvmc_mobilenet.runtime.executor import TimingStats, compare_outputs, load_local, verify_on_reference


def test_runs_and_matches_the_reference(tiny_artifact):
    art = open_artifact(tiny_artifact)
    model = load_local(art)
    comparison = verify_on_reference(model, art)
    assert comparison.passed and comparison.max_rel_error <= 1e-4


def test_timing_statistics(tiny_artifact):
    art = open_artifact(tiny_artifact)
    stats = load_local(art).time(art.reference_input(), number=2, repeat=5, warmup=1)
    assert stats.repeat == 5 and stats.number == 2 and stats.warmup == 1
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms <= stats.max_ms
    assert stats.min_ms <= stats.mean_ms <= stats.max_ms and stats.std_ms >= 0
    assert json.loads(json.dumps(stats.to_json()))["samples_ms"] == list(stats.samples_ms)


def test_timing_stats_from_known_samples():
    stats = TimingStats.from_seconds([0.004, 0.001, 0.002, 0.003], number=1, warmup=0)
    assert stats.median_ms == pytest.approx(2.5) and stats.mean_ms == pytest.approx(2.5)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(4.0)
    assert stats.p90_ms == pytest.approx(3.7)


def test_an_aligned_input_is_read_in_place_and_any_other_is_copied(tiny_artifact):
    """The same output whether TVM reads the array in place (64-byte aligned, writeable) or
    copies it (offset, read-only, strided); the input is never written, and each run's output is
    an array of its own that the next run does not overwrite."""
    art = open_artifact(tiny_artifact)
    model = load_local(art)
    data = art.reference_input()
    assert readable_in_place(data)  # the artifact's input is placed to be read in place
    kept = data.copy()
    first = model.run(data)
    assert np.array_equal(data, kept)
    raw = np.empty(data.nbytes + 64, np.uint8)
    offset = raw[(-raw.ctypes.data % 64) + 16 :][: data.nbytes].view(data.dtype).reshape(data.shape)
    offset[...] = data
    read_only = data.copy()
    read_only.flags.writeable = False
    strided = np.asfortranarray(data)
    other = np.random.default_rng(3).standard_normal(data.shape).astype(data.dtype)
    for variant in (offset, read_only, strided):
        assert not readable_in_place(variant)
        assert np.array_equal(model.run(variant), first)
    second = model.run(other)
    assert not np.array_equal(second, first) and np.array_equal(model.run(data), first)
    first_again = first.copy()
    model.run(other)
    assert np.array_equal(first, first_again)  # the later run did not write into an earlier output


def test_aligned_arrays():
    for array in (np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.arange(7, dtype=np.int8), np.ones((3, 5))[:, ::2]):
        placed = aligned(array)
        assert readable_in_place(placed) and np.array_equal(placed, array) and placed.dtype == array.dtype
        assert aligned(placed) is placed


@pytest.mark.faults("bad_input")
def test_wrong_input_shape_is_refused(tiny_artifact):
    model = load_local(open_artifact(tiny_artifact))
    expected = r"input has shape \(1, 3, 64, 64\) and dtype float32; the model expects shape \(1, 3, 96, 96\)"
    with pytest.raises(BadInputError, match=expected):
        model.run(np.zeros((1, 3, 64, 64), np.float32))


@pytest.mark.faults("bad_input")
def test_tampered_library_is_not_loaded(artifact_copy, tmp_path):
    from .test_artifact import _rewrite

    _rewrite(artifact_copy, lambda m: m["library"].update(sha256="0" * 64))
    with pytest.raises(ArtifactError, match=r"refusing to load it"):
        load_local(open_artifact(artifact_copy))


def test_compare_outputs():
    ref = np.array([[10.0, -20.0, 5.0]], np.float32)
    assert compare_outputs(ref + 1e-4, ref).passed
    bad = compare_outputs(ref + 0.1, ref)
    assert not bad.passed and bad.max_rel_error == pytest.approx(0.1 / 20, rel=1e-3)
    assert not compare_outputs(ref * np.nan, ref).passed
    assert not compare_outputs(ref[:, :2], ref).passed


def test_loads_with_the_tvm_runtime_alone_and_without_torch(tiny_artifact):
    """A device has only the TVM runtime: no compiler library, no torch."""
    script = textwrap.dedent(
        f"""
        import sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockTorch())
        from tvmc_mobilenet.runtime.artifact import open_artifact
        from tvmc_mobilenet.runtime.executor import load_local, verify_on_reference

        art = open_artifact({str(tiny_artifact)!r})
        model = load_local(art)
        cmp = verify_on_reference(model, art)
        stats = model.time(art.reference_input(), number=1, repeat=2, warmup=0)
        maps = open("/proc/self/maps").read()
        assert "libtvm_runtime" in maps, "runtime library not loaded"
        assert "libtvm_compiler" not in maps, "compiler library was loaded"
        assert "torch" not in sys.modules and "tvm.relax" not in sys.modules
        print("OK", cmp.max_rel_error, stats.median_ms)
        """
    )
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("OK")


def test_per_kernel_profile(tiny_artifact):
    art = open_artifact(tiny_artifact)
    kernels = art.manifest["kernels"]
    assert {k["kind"] for k in kernels} >= {"conv", "depthwise", "pointwise", "dense", "pool"}
    assert sum(k["calls"] for k in kernels if k["kind"] == "pointwise") == 13
    rows = load_local(art).profile(kernels, number=2, repeat=2)
    assert [r.name for r in rows] and {r.name for r in rows} == {k["name"] for k in kernels}
    assert rows == sorted(rows, key=lambda r: -r.total_ms)
    assert sum(r.share for r in rows) == pytest.approx(100.0)
    assert all(r.mean_ms > 0 and r.total_ms == pytest.approx(r.mean_ms * r.calls) for r in rows)
