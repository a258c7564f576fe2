"""The layer list of Table 1 under α and ρ, and validation of the network's parameters."""

import pytest

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.spec import LayerKind, ModelConfig, Variant, layer_specs, scale_channels


def test_table1_structure():
    layers = layer_specs(ModelConfig())
    kinds = [layer.kind for layer in layers]
    assert kinds[0] is LayerKind.CONV
    assert kinds.count(LayerKind.DEPTHWISE) == 13 and kinds.count(LayerKind.POINTWISE) == 13
    assert kinds[-2:] == [LayerKind.POOL, LayerKind.DENSE]
    assert (layers[0].out_channels, layers[0].stride, layers[0].out_size) == (32, 2, 112)
    # Downsampling happens in the depthwise layers only: 112 → 56 → 28 → 14 → 7.
    assert [l.out_size for l in layers if l.kind is LayerKind.DEPTHWISE and l.stride == 2] == [56, 28, 14, 7]
    assert all(l.stride == 1 for l in layers if l.kind is LayerKind.POINTWISE)
    last_pw = [l for l in layers if l.kind is LayerKind.POINTWISE][-1]
    assert (last_pw.out_channels, last_pw.out_size) == (1024, 7)
    assert layers[-1].in_channels == 1024 and layers[-1].out_channels == 1000


def test_width_multiplier_thins_every_layer_with_int_truncation():
    layers = layer_specs(ModelConfig(alpha=0.75))
    assert layers[0].out_channels == 24  # int(32 * 0.75)
    assert layers[-1].in_channels == 768
    assert scale_channels(32, 0.01) == 1  # never zero channels
    assert scale_channels(1000, 0.333) == 333


@pytest.mark.parametrize("resolution, final", [(32, 1), (128, 4), (512, 16)])
def test_any_multiple_of_32_resolution(resolution, final):
    layers = layer_specs(ModelConfig(resolution=resolution))
    assert layers[-2].in_size == final  # the global pool's input


def test_variants():
    shallow = layer_specs(ModelConfig(variant="shallow"))
    assert sum(l.kind is LayerKind.DEPTHWISE for l in shallow) == 8
    assert not any(l.kind is LayerKind.POINTWISE and l.in_channels == l.out_channels == 512 for l in shallow)
    full = layer_specs(ModelConfig(variant=Variant.FULL_CONV))
    assert {l.kind for l in full} == {LayerKind.CONV, LayerKind.POOL, LayerKind.DENSE}
    assert sum(l.kind is LayerKind.CONV for l in full) == 14


def test_names_and_rho():
    assert ModelConfig(alpha=0.5, resolution=160).name == "mobilenet_v1_0.5_160"
    assert ModelConfig(variant="shallow").name == "mobilenet_v1_1_224_shallow"
    assert ModelConfig(resolution=448).rho == 2.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha=0), r"alpha must be a number in \(0, 1\], got 0"),
        (dict(alpha=1.5), r"alpha must be a number in \(0, 1\], got 1.5"),
        (dict(alpha=-0.25), r"alpha must be a number in \(0, 1\]"),
        (dict(alpha="0.5"), r"alpha must be a number in \(0, 1\], got '0.5'"),
        (dict(resolution=100), r"resolution must be a multiple of 32 from 32 to 512 .* got 100"),
        (dict(resolution=544), r"resolution must be a multiple of 32 from 32 to 512 .* got 544"),
        (dict(resolution=0), r"resolution must be a multiple of 32"),
        (dict(variant="mobilenet-v2"), r"unknown variant 'mobilenet-v2'; choose one of: mobilenet, full-conv, shallow"),
        (dict(num_classes=0), r"number of classes must be a positive integer, got 0"),
        (dict(batch=0), r"batch size must be an integer from 1 to 1024, got 0"),
    ],
)
def test_bad_parameters_have_clear_messages(kwargs, message):
    with pytest.raises(BadInputError, match=message):
        ModelConfig(**kwargs)
