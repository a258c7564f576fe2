"""The target registry: names, aliases, tags, JSON targets, and their errors."""

import json
import os
import shutil

import pytest

from tvmc_mobilenet.errors import TargetError
from tvmc_mobilenet.targets.host import host_cores, host_target_json
from tvmc_mobilenet.targets.toolchain import CudaCompiler, cuda_compiler_for, nvcc_architectures
from tvmc_mobilenet.targets.registry import TARGETS, Device, Measure, local_cuda_arch, require_buildable, resolve_target


def test_registry_holds_the_boards_of_the_mission():
    names = {t.name for t in TARGETS}
    boards = {"host", "rasp4b", "rasp3b", "rk3399", "aarch64"}
    gpus = {"jetson-orin-nano", "jetson-agx-orin", "jetson-xavier", "cuda", "a100", "h100"}
    assert boards | gpus <= names
    for spec in TARGETS:  # every entry is plain data that serialises
        json.dumps(spec.to_json())


def test_host_is_detected():
    host = resolve_target("host")
    assert host.target_json["kind"] == "llvm"
    assert host.target_json["num-cores"] == host_cores()
    assert host.runs_here
    assert host_target_json() == host.target_json


def test_rasp4b_is_the_tvm_tag():
    rasp = resolve_target("rasp4b")
    assert rasp.target_json["mcpu"] == "cortex-a72"
    assert rasp.target_json["mtriple"] == "aarch64-linux-gnu"
    assert "+neon" in rasp.target_json["mattr"]
    assert rasp.spec.threads == 4 and rasp.spec.rpc_key == "rasp4b"
    assert rasp.spec.cross_compiler == "aarch64-linux-gnu-g++"
    assert rasp.spec.measure is Measure.RPC and not rasp.runs_here


def test_aliases_and_gpu_entries():
    assert resolve_target("h200").name == "h100"
    assert resolve_target("a100").target_json["arch"] == "sm_80"
    jetson = resolve_target("jetson-orin-nano")
    assert jetson.spec.device is Device.CUDA
    assert jetson.target_json["arch"] == "sm_87" and jetson.target_json["host"]["mtriple"] == "aarch64-linux-gnu"


def test_any_tvm_tag_or_json_target_passes_through():
    tag = resolve_target("nvidia/nvidia-t4")
    assert tag.spec.device is Device.CUDA and tag.target_json["arch"] == "sm_75"
    custom = resolve_target('{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55"}')
    assert custom.target_json["mcpu"] == "cortex-a55"
    assert custom.spec.cross_compiler == "aarch64-linux-gnu-g++" and not custom.runs_here
    native = resolve_target('{"kind": "llvm"}')
    assert native.runs_here and native.spec.cross_compiler is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("raspberry", r"unknown target 'raspberry': not one of host, rasp4b.*run 'tvmc-mobilenet targets'"),
        ("{not json", r"target '\{not json' is not valid JSON"),
        ('{"mcpu": "x"}', r"a JSON target must be an object with a \"kind\" key"),
        ('{"kind": "llvm", "bogus": 1}', r"unknown target .*Unknown config option 'bogus'"),
    ],
)
def test_unknown_targets(text, message):
    with pytest.raises(TargetError, match=message):
        resolve_target(text)


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
def test_missing_toolchains(monkeypatch, tmp_path):
    import tvmc_mobilenet.targets.nvrtc as nvrtc

    original_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(nvrtc, "cuda11_nvrtc", lambda: None)
    with pytest.raises(TargetError, match=r"apt-get install g\+\+-aarch64-linux-gnu"):
        require_buildable(resolve_target("rk3399"))
    with pytest.raises(TargetError, match=r"compile their kernels with nvcc, which is not on PATH"):
        require_buildable(resolve_target("h100"))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(TargetError, match=r"'host' links its library with this machine's C\+\+ compiler and none was found"):
        require_buildable(resolve_target("host"))
    monkeypatch.setenv("PATH", os.path.dirname(shutil.which("g++", path=original_path)))
    require_buildable(resolve_target("host"))


def test_cuda_targets_carry_their_architecture_and_jetson_cpus():
    assert resolve_target("h200").target_json["arch"] == "sm_90"  # not TVM's sm_90a: no portable PTX there
    orin, agx = resolve_target("jetson-orin-nano"), resolve_target("jetson-agx-orin")
    assert orin.target_json["arch"] == agx.target_json["arch"] == "sm_87"
    # TVM's tag gives the Orin Nano Xavier's Carmel CPU; the board has six Cortex-A78AE cores.
    assert (orin.target_json["host"]["mcpu"], orin.target_json["host"]["num-cores"]) == ("cortex-a78ae", 6)
    assert agx.target_json["host"]["num-cores"] == 12
    assert orin.spec.measure is Measure.RPC and orin.spec.cross_compiler == "aarch64-linux-gnu-g++"
    assert resolve_target("cuda", "sm_89").target_json["arch"] == "sm_89"
    assert resolve_target("a100", "sm_86").target_json["arch"] == "sm_86"
    adhoc = resolve_target('{"kind": "cuda", "arch": "sm_87", "host": {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}}')
    assert adhoc.spec.cross_compiler == "aarch64-linux-gnu-g++" and adhoc.spec.measure is Measure.RPC


def test_cuda_architecture_errors():
    if local_cuda_arch() is None:
        with pytest.raises(TargetError, match=r"no NVIDIA GPU was found here .* --arch sm_XX"):
            require_buildable(resolve_target("cuda"))
    with pytest.raises(TargetError, match=r"'sm90' is not of the form sm_XX"):
        resolve_target("cuda", "sm90")
    with pytest.raises(TargetError, match=r"'rasp4b' is a cpu target"):
        resolve_target("rasp4b", "sm_87")


@pytest.mark.faults("bad_input")
@pytest.mark.nvcc
@pytest.mark.nvrtc11
def test_architectures_nvcc_dropped_go_to_cuda11_nvrtc():
    # CUDA 13's nvcc starts at sm_75: the Xavier (sm_72) and older GPUs compile with NVRTC 11.8.
    assert cuda_compiler_for("sm_87") is CudaCompiler.NVCC
    for arch in ("sm_72", "sm_70", "sm_53"):
        assert cuda_compiler_for(arch) is (CudaCompiler.NVCC if arch in nvcc_architectures() else CudaCompiler.NVRTC_11)
    require_buildable(resolve_target("cuda", "sm_61"))
    refusal = r"no compiler here targets sm_30: nvcc supports sm_\d+ to sm_\d+, CUDA 11.8's NVRTC sm_35 to sm_90"
    with pytest.raises(TargetError, match=refusal):
        require_buildable(resolve_target("cuda", "sm_30"))


@pytest.mark.faults("bad_input")
def test_missing_cuda_compilers_say_what_to_install(monkeypatch):
    import tvmc_mobilenet.targets.nvrtc as nvrtc
    import tvmc_mobilenet.targets.toolchain as toolchain

    monkeypatch.setattr(nvrtc, "cuda11_nvrtc", lambda: None)
    if shutil.which("nvcc") is not None and "sm_72" not in nvcc_architectures():
        refusal = r"this nvcc cannot compile for sm_72 .*install CUDA 11.8's NVRTC: pip install 'tvmc-mobilenet\[cuda11\]'"
        with pytest.raises(TargetError, match=refusal):
            require_buildable(resolve_target("jetson-xavier"))
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    with pytest.raises(TargetError, match=r"nvcc, which is not on PATH; install the CUDA toolkit \(nvcc\), or CUDA 11.8's NVRTC"):
        require_buildable(resolve_target("jetson-orin-nano"))


@pytest.mark.faults("bad_input")
@pytest.mark.nvrtc11
def test_without_nvcc_cuda11_nvrtc_builds_what_it_targets(monkeypatch):
    import tvmc_mobilenet.targets.toolchain as toolchain

    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    assert cuda_compiler_for("sm_87") is CudaCompiler.NVRTC_11  # an Orin: a CUDA 11.8 cubin
    with pytest.raises(TargetError, match=r"CUDA 11.8's NVRTC does not target sm_100 and nvcc is not on PATH; install the CUDA toolkit"):
        cuda_compiler_for("sm_100")
    with pytest.raises(TargetError, match=r"--cuda-compiler nvcc: nvcc is not on PATH"):
        cuda_compiler_for("sm_87", CudaCompiler.NVCC)
    with pytest.raises(TargetError, match=r"NVRTC cannot compile for sm_90a \(it targets sm_35 to sm_90, no 'a' variants\); use nvcc"):
        cuda_compiler_for("sm_90a", CudaCompiler.NVRTC_11)
