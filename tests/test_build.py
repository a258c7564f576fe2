"""Build: verified artifacts for the host, what the manifest records, what a failure leaves."""

import importlib.metadata
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from tvmc_mobilenet.options import ModelOptions, TargetOptions
from tvmc_mobilenet.build import BuildConfig, build_model, default_output_path
from tvmc_mobilenet.errors import BadInputError, TargetError, VerificationError
from tvmc_mobilenet.runtime.artifact import open_artifact
from tvmc_mobilenet.targets.registry import resolve_target

from tests.helpers import TINY
from tests.compiler.onnx_models import conv_bn_model


def test_tiny_artifact_is_verified_and_complete(tiny_artifact):
    art = open_artifact(tiny_artifact)
    m = art.manifest
    assert m["verification"]["status"] == "passed"
    assert m["verification"]["max_rel_error"] <= 1e-4
    assert m["model"]["alpha"] == 0.25 and m["model"]["resolution"] == 96 and m["model"]["variant"] == "mobilenet"
    assert {k: v for k, v in m["input"].items() if k != "preprocess"} == {
        "name": m["input"]["name"], "shape": [1, 3, 96, 96], "dtype": "float32", "layout": "NCHW"
    }  # fmt: skip
    assert m["input"]["preprocess"]["name"] == "torch"  # the built-in network's default normalisation
    assert m["input"]["preprocess"]["mean"] == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255])
    assert m["target"]["name"] == "host" and m["target"]["tvm"]["kind"] == "llvm"
    assert m["versions"]["tvm"] == importlib.metadata.version("apache-tvm")
    assert m["versions"]["tvm_ffi"] == importlib.metadata.version("apache-tvm-ffi")
    assert m["tuning"]["database"] is None and m["tuning"]["kernels_total"] > 20
    # one layout for the whole network: feature maps transposed at the input and before the classifier only
    assert m["layout"] == {"activations": "NHWC", "weights": "HWIO", "transforms": 2}
    assert m["build"]["config"]["alpha"] == 0.25 and m["build"]["seconds"] > 0
    assert art.reference_input().shape == (1, 3, 96, 96)
    assert art.reference_output().shape == (1, 1000)
    with tarfile.open(tiny_artifact) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "model.so", "reference_input.npy", "reference_output.npy"]


#: The paper's α × ρ grid, as every α once and every ρ once (the kernels' channel counts follow α,
#: their map sizes ρ), and the two corners left: 6 of the 16 models, the suite's budget on 2 cores.
PAPER_GRID_SAMPLE = [(1.0, 224), (0.75, 192), (0.5, 160), (0.25, 128), (1.0, 128), (0.25, 224)]


@pytest.mark.slow
@pytest.mark.parametrize(("alpha", "resolution"), PAPER_GRID_SAMPLE)
def test_paper_grid_agrees_with_pytorch(alpha, resolution, tmp_path):
    result = build_model(BuildConfig(model=ModelOptions(alpha=alpha, resolution=resolution), output=tmp_path / "m.tar"))
    v = result.verification
    assert v["status"] == "passed"
    assert v["max_abs_error"] <= 1e-4 * np.max(np.abs(open_artifact(result.artifact_path).reference_output()))


def test_smallest_resolution_builds_and_verifies(tmp_path):
    """At 32×32 the last blocks see a 1×1 feature map: kernels no default rule may choke on."""
    result = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=32), output=tmp_path / "m.tar"))
    assert result.verification["status"] == "passed"


@pytest.mark.parametrize("variant", ["shallow", "full-conv"])
def test_variants_build(variant, tmp_path):
    result = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=64, variant=variant), output=tmp_path / "m.tar"))
    assert result.verification["status"] == "passed"
    assert result.manifest["model"]["variant"] == variant


def test_batch_and_classes(tmp_path):
    result = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=64, batch=3, num_classes=10), output=tmp_path / "m.tar"))
    assert result.manifest["input"]["shape"] == [3, 3, 64, 64]
    assert result.manifest["output"]["shape"] == [3, 10]
    assert result.verification["status"] == "passed"


def test_user_weights_are_used(tmp_path):
    torch = pytest.importorskip("torch")
    from tvmc_mobilenet.model.network import build_network
    from tvmc_mobilenet.model.spec import ModelConfig

    config = ModelConfig(alpha=0.25, resolution=64)
    net = build_network(config, seed=42)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    result = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=64, weights=tmp_path / "w.pt"), output=tmp_path / "m.tar"))
    art = open_artifact(result.artifact_path)
    with torch.no_grad():
        expected = net(torch.from_numpy(art.reference_input())).numpy()
    np.testing.assert_allclose(art.reference_output(), expected, rtol=1e-6, atol=1e-6)
    assert "w.pt" in result.manifest["model"]["weights"]


def test_onnx_model_builds_and_verifies_against_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    path = conv_bn_model(tmp_path / "m.onnx", batch="N")
    result = build_model(BuildConfig(model=ModelOptions(model_file=path, batch=2), output=tmp_path / "m.tar"))
    assert result.verification["status"] == "passed"
    assert result.verification["reference"] == "onnxruntime"
    assert result.manifest["model"]["source"] == "onnx"
    assert result.manifest["input"]["shape"] == [2, 3, 32, 32]


def test_model_options_with_an_onnx_file_are_refused(tmp_path):
    with pytest.raises(BadInputError, match=r"a model file's shape comes from the file"):
        BuildConfig(model=ModelOptions(model_file=tmp_path / "m.onnx", alpha=0.5))
    with pytest.raises(BadInputError, match=r"--weights applies to the built-in MobileNet"):
        BuildConfig(model=ModelOptions(model_file=tmp_path / "m.onnx", weights=tmp_path / "w.pt"))


def test_mismatch_is_an_error_and_writes_nothing(tmp_path, monkeypatch):
    from tvmc_mobilenet.compiler import frontend

    real_import = frontend.import_pytorch

    def wrong_reference(net, shape):
        imported = real_import(net, shape)
        good = imported._reference_fn
        imported._reference_fn = lambda data: good(data) * 1.01  # a 1% error
        return imported

    monkeypatch.setattr(frontend, "import_pytorch", wrong_reference)
    out = tmp_path / "m.tar"
    with pytest.raises(VerificationError, match=r"disagrees with pytorch: .* > tolerance 0.0001; no artifact written"):
        build_model(BuildConfig(model=ModelOptions(**TINY), output=out))
    assert list(tmp_path.iterdir()) == []


def test_existing_artifact_survives_a_failed_build(tmp_path, tiny_artifact):
    out = tmp_path / "m.tar"
    out.write_bytes(tiny_artifact.read_bytes())
    with pytest.raises(TargetError):
        build_model(BuildConfig(model=ModelOptions(**TINY), target=TargetOptions(name="no-such-board"), output=out))
    assert out.read_bytes() == tiny_artifact.read_bytes()


def test_output_that_is_a_directory(tmp_path):
    with pytest.raises(BadInputError, match=r"is a directory"):
        build_model(BuildConfig(model=ModelOptions(**TINY), output=tmp_path))


def test_a_target_that_cannot_be_built_is_refused_before_work(tmp_path, monkeypatch):
    with pytest.raises(TargetError, match=r"CUDA architecture 'sm9' is not of the form sm_XX"):
        build_model(BuildConfig(model=ModelOptions(**TINY), target=TargetOptions(name="cuda", cuda_arch="sm9"), output=tmp_path / "m.tar"))
    import tvmc_mobilenet.targets.nvrtc as nvrtc

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvcc, no g++
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    if nvrtc.cuda11_nvrtc() is not None:  # the kernels would compile; the host side would not link
        with pytest.raises(TargetError, match=r"'a100' links its library with this machine's C\+\+ compiler and none was found"):
            build_model(BuildConfig(model=ModelOptions(**TINY), target=TargetOptions(name="a100"), output=tmp_path / "m.tar"))
    monkeypatch.setattr(nvrtc, "cuda11_nvrtc", lambda: None)  # nor CUDA 11.8's NVRTC
    with pytest.raises(TargetError, match=r"compile their kernels with nvcc, which is not on PATH"):
        build_model(BuildConfig(model=ModelOptions(**TINY), target=TargetOptions(name="a100"), output=tmp_path / "m.tar"))
    assert list(tmp_path.iterdir()) == []


def test_missing_cross_compiler_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetError, match=r"needs the cross compiler aarch64-linux-gnu-g\+\+.*apt-get install g\+\+-aarch64-linux-gnu"):
        build_model(BuildConfig(model=ModelOptions(**TINY), target=TargetOptions(name="rasp4b"), output=tmp_path / "m.tar"))


@pytest.mark.aarch64_cc
def test_cross_build_for_rasp4b_is_an_aarch64_library(tmp_path):
    result = build_model(BuildConfig(model=ModelOptions(**TINY), target=TargetOptions(name="rasp4b"), output=tmp_path / "m.tar"))
    assert result.verification["status"] == "skipped"
    assert "do not run on this machine" in result.verification["reason"]
    library = open_artifact(result.artifact_path).library_bytes
    assert library[:4] == b"\x7fELF"
    assert int.from_bytes(library[18:20], "little") == 183  # e_machine EM_AARCH64
    assert result.manifest["target"]["tvm"]["mcpu"] == "cortex-a72"


def test_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=64)))
    assert result.artifact_path == tmp_path / "mobilenet_v1_0.25_64-host.tar"
    assert json.loads(json.dumps(result.manifest))["build"]["config"]["output"] is None
    rasp4b = default_output_path(BuildConfig(), resolve_target("rasp4b"))
    assert rasp4b.name == "mobilenet_v1_1_224-rasp4b.tar"


@pytest.mark.faults("fault")
@pytest.mark.parametrize("stage", ["exporting with torch.export", "compiling for host"])
def test_ctrl_c_during_a_build_keeps_the_earlier_artifact_and_leaves_no_partial_file(stage, tmp_path):
    """SIGINT at a stage of the build: exit 130 with one line, the artifact already at the output
    path is the one the user had, and no temporary file is left beside it."""
    output = tmp_path / "m.tar"
    output.write_bytes(b"the user's earlier artifact")
    script = str(Path(sys.executable).parent / "tvmc-mobilenet")
    proc = subprocess.Popen(
        [script, "build", "-a", "0.25", "-r", "64", "--no-tuning-db", "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 300
        seen = []
        for line in proc.stderr:  # the build's progress lines, as they come
            seen.append(line)
            if stage in line:
                proc.send_signal(signal.SIGINT)
                break
            assert time.time() < deadline, "".join(seen)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(seen) + err
    assert err.strip().splitlines()[-1] == "error: interrupted"
    assert output.read_bytes() == b"the user's earlier artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tar"]


def test_int8_build_records_its_quantization_and_verifies_exactly(tmp_path):
    from PIL import Image

    calibration = tmp_path / "images"
    calibration.mkdir()
    for i in range(3):
        Image.new("RGB", (72, 72), (40 * i, 200 - 50 * i, 90)).save(calibration / f"{i}.png")
    config = BuildConfig(model=ModelOptions(**TINY, quantize="int8", calibration=calibration, preprocess="tf"), output=tmp_path / "q.tar")
    lines: list[str] = []
    result = build_model(config, log=lines.append)
    m = result.manifest
    assert m["model"]["name"] == "mobilenet_v1_0.25_96_int8" and m["model"]["quantize"] == "int8"
    q = m["quantization"]
    assert q["scheme"] == "int8" and q["calibration"]["images"] == 3 and q["calibration"]["source"] == str(calibration)
    # --preprocess tf: recorded for `run --image`, and the calibration images were normalised with it
    assert m["input"]["preprocess"]["name"] == "tf" and "(x - 127.5) / 127.5" in q["calibration"]["preprocessing"]
    assert len(q["layers"]) == 27 and all(len(layer["requantize_scales"]) == len(layer["weight_scales"]) for layer in q["layers"])
    assert 0 <= q["against_fp32"]["top1_agreement"] <= 1 and q["against_fp32"]["samples"] == 16
    assert any("int8 against fp32" in line and "SQNR" in line for line in lines)
    v = result.verification
    assert v["status"] == "passed" and v["reference"].startswith("numpy")
    assert v["max_abs_error"] <= q["classifier"]["logits_scale"] * (1 + 1e-6)  # ±1 quantum of the int8 logits
    art = open_artifact(result.artifact_path)
    assert art.input_dtype == "float32" and art.manifest["kernels"]
    from tvmc_mobilenet.runtime.commands import RunConfig, run_artifact

    assert run_artifact(RunConfig(result.artifact_path)).comparison.passed  # run checks it against the stored reference
