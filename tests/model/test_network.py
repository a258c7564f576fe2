"""The PyTorch network: shapes, deterministic weights, non-trivial BatchNorm, state_dict loading."""

import pytest
import torch

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.network import build_network
from tvmc_mobilenet.model.spec import ModelConfig

TINY = ModelConfig(alpha=0.25, resolution=96)


def test_forward_gives_logits_of_every_class():
    net = build_network(ModelConfig(alpha=0.25, resolution=64, num_classes=10, batch=2))
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_parameter_count_matches_the_analytical_cost():
    from tvmc_mobilenet.model.cost import model_cost

    net = build_network(TINY)
    weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert weights == model_cost(TINY).params


def test_random_weights_are_deterministic_per_seed():
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        a, b, c = (build_network(TINY, seed=s)(x) for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_batchnorm_statistics_are_far_from_identity():
    net = build_network(TINY)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 27
    for bn in bns:
        assert bn.running_mean.abs().max() > 1e-2
        assert (bn.running_var - 1).abs().max() > 1e-2
        assert (bn.weight - 1).abs().max() > 1e-2 and bn.bias.abs().max() > 1e-2


def test_activations_keep_a_sane_scale():
    with torch.no_grad():
        out = build_network(ModelConfig())(torch.randn(1, 3, 224, 224))
    assert 1 < out.abs().max() < 1e4


def test_weights_round_trip_through_a_state_dict(tmp_path):
    src = build_network(TINY, seed=3)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    loaded = build_network(TINY, weights=path)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(src(x), loaded(x))


def test_weights_for_another_width_are_refused(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_network(ModelConfig(alpha=0.5, resolution=96)).state_dict(), path)
    with pytest.raises(BadInputError, match=r"does not fit mobilenet_v1_0.25_96 .*expected .*check --alpha"):
        build_network(TINY, weights=path)


@pytest.mark.faults("bad_input")
def test_weights_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "w.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(BadInputError, match=r"is not a PyTorch state_dict"):
        build_network(TINY, weights=path)
    with pytest.raises(BadInputError, match=r"does not exist"):
        build_network(TINY, weights=tmp_path / "missing.pt")
