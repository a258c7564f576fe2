"""The analytical cost reproduces the paper's numbers (Tables 1, 2, 4, 5, 6, 7)."""

import pytest

from tvmc_mobilenet.model.cost import model_cost
from tvmc_mobilenet.model.spec import LayerKind, ModelConfig

M = 1e6


def cost(**kw):
    return model_cost(ModelConfig(**kw))


@pytest.mark.parametrize(
    "alpha, resolution, mult_adds_m, params_m",
    [
        (1.0, 224, 569, 4.2),
        (1.0, 192, 418, 4.2),
        (1.0, 160, 290, 4.2),
        (1.0, 128, 186, 4.2),
        (0.75, 224, 325, 2.6),
        (0.5, 224, 149, 1.3),
        (0.25, 224, 41, 0.5),
    ],
)
def test_paper_mult_adds_and_params(alpha, resolution, mult_adds_m, params_m):
    c = cost(alpha=alpha, resolution=resolution)
    # The paper rounds to whole millions of Mult-Adds and tenths of millions of parameters.
    assert abs(c.mult_adds / M - mult_adds_m) < 1.0
    assert round(c.params / M, 1) == params_m


def test_exact_totals_for_the_reference_network():
    c = cost()
    assert c.mult_adds == 568_740_352
    assert c.params == 4_209_088
    assert c.flops == 2 * 568_740_352


def test_table2_shares_by_layer_type():
    shares = {s.kind: s for s in cost().shares()}
    assert round(shares[LayerKind.POINTWISE].mult_adds_share, 2) == 94.86
    assert round(shares[LayerKind.POINTWISE].params_share, 2) == 74.59
    assert round(shares[LayerKind.DEPTHWISE].mult_adds_share, 2) == 3.06
    assert round(shares[LayerKind.DEPTHWISE].params_share, 2) == 1.06
    assert round(shares[LayerKind.DENSE].mult_adds_share, 2) == 0.18
    assert round(shares[LayerKind.DENSE].params_share, 2) == 24.33
    assert sum(s.mult_adds_share for s in shares.values()) == pytest.approx(100.0)


def test_table4_full_convolution_network():
    c = cost(variant="full-conv")
    assert abs(c.mult_adds / M - 4866) < 2  # paper: 4866M, 29.3M parameters
    assert round(c.params / M, 1) == 29.3


def test_table5_shallow_network():
    c = cost(variant="shallow")
    assert abs(c.mult_adds / M - 307) < 1  # paper: 307M, 2.9M parameters
    assert round(c.params / M, 1) == 2.9


def test_batch_scales_flops_not_per_image_counts():
    assert cost(batch=8).mult_adds == cost().mult_adds
    assert cost(batch=8).flops == 8 * cost().flops


def test_json_lists_every_layer_and_share():
    data = cost(alpha=0.5, resolution=160).to_json()
    assert data["mult_adds"] == sum(layer["mult_adds"] for layer in data["layers"])
    assert {s["kind"] for s in data["shares"]} == {"conv", "depthwise", "pointwise", "pool", "dense"}
    assert data["model"]["rho"] == pytest.approx(160 / 224)
