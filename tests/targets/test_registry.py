"""The target registry: names, aliases, tags, JSON targets, and their errors."""

import json

import pytest

from tvmc_mobilenet.errors import TargetError
from tvmc_mobilenet.targets.host import host_cores, host_target_json
from tvmc_mobilenet.targets.registry import TARGETS, Device, Measure, require_buildable, resolve_target


def test_registry_holds_the_boards_of_the_mission():
    names = {t.name for t in TARGETS}
    assert {"host", "rasp4b", "rasp3b", "rk3399", "aarch64", "jetson-orin-nano", "cuda", "a100", "h100"} <= names
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


def test_unsupported_and_missing_toolchain(monkeypatch, tmp_path):
    with pytest.raises(TargetError, match=r"not supported yet"):
        require_buildable(resolve_target("cuda"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetError, match=r"apt-get install g\+\+-aarch64-linux-gnu"):
        require_buildable(resolve_target("rk3399"))
    require_buildable(resolve_target("host"))
