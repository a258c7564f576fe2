"""A sweep's config and results as JSON: written flat, read back, also from files of earlier versions."""

from pathlib import Path

import pytest

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.options import RpcOptions, TargetOptions, TimingOptions
from tvmc_mobilenet.sweep.results import SweepConfig, load_result, parse_list

KEPT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "sweep_host" / "sweep.json"


def test_config_round_trips_through_json():
    config = SweepConfig(
        target=TargetOptions("rasp4b"),
        alphas=(0.5,),
        resolutions=(128, 96),
        rpc=RpcOptions(tracker="127.0.0.1:9190", key="rasp4b"),
        timing=TimingOptions(repeat=2, number=1, warmup=0),
        rounds=2,
    )
    assert SweepConfig.from_json(config.to_json()) == config
    assert config.identity() == {"target": "rasp4b", "cuda_arch": None, "trials_per_model": 0, "seed": 0}


def test_the_kept_host_sweep_still_loads():
    result = load_result(KEPT)
    assert result.config.target.name == "host" and result.config.timing.repeat == 10 and result.config.rounds == 10
    assert len(result.rows) == 16 and all(r.latency_median_ms > 0 for r in result.rows)


@pytest.mark.faults("bad_input")
def test_parse_list_names_the_option():
    assert parse_list("1, 0.5", float, "--alphas") == (1.0, 0.5)
    with pytest.raises(BadInputError, match=r"--resolutions: 'x' is not an integer"):
        parse_list("224,x", int, "--resolutions")
