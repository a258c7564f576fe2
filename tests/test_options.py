"""The option groups: validation when made, and the flat form manifests and sweeps record."""

from pathlib import Path

import pytest

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.options import ModelOptions, RpcOptions, TargetOptions, TimingOptions, group_from_json


@pytest.mark.faults("bad_input")
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ModelOptions(alpha=1.5), r"alpha"),
        (lambda: ModelOptions(model_file=Path("m.onnx"), alpha=0.5), r"drop them when using --model"),
        (lambda: ModelOptions(model_file=Path("m.onnx"), weights=Path("w.pt")), r"--weights applies to the built-in"),
        (lambda: TargetOptions(cuda_compiler="clang"), r"--cuda-compiler"),
        (lambda: TimingOptions(repeat=0), r"repeat ≥ 1"),
        (lambda: TimingOptions(warmup=-1), r"warmup ≥ 0"),
    ],
)
def test_bad_values_are_refused_when_the_group_is_made(make, message):
    with pytest.raises(BadInputError, match=message):
        make()


def test_groups_round_trip_through_their_flat_json():
    model = ModelOptions(alpha=0.5, resolution=160, weights=Path("w.pt"), seed=3)
    target = TargetOptions("jetson-orin-nano", cuda_compiler="nvrtc")
    rpc = RpcOptions(tracker="127.0.0.1:9190", key="rasp4b", timeout=30.0)
    timing = TimingOptions(repeat=3, number=2, warmup=1)
    flat = {**model.to_json(), **target.to_json(), **rpc.to_json(), **timing.to_json()}
    assert flat["target"] == "jetson-orin-nano" and flat["rpc_tracker"] == "127.0.0.1:9190" and flat["weights"] == "w.pt"
    for group in (model, target, rpc, timing):
        assert group_from_json(type(group), flat) == group


def test_model_name_and_rpc_given():
    assert ModelOptions(alpha=0.25, resolution=96).model_name == "mobilenet_v1_0.25_96"
    assert ModelOptions(model_file=Path("dir/net.onnx")).model_name == "net"
    assert not RpcOptions().given and RpcOptions(host="h", port=1).given
