"""int8 post-training quantization: float32 requantization, scales, saturation, ReLU6, and the
integer graph in TVM against the same graph executed by NumPy at MobileNet shapes across α."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvmc_mobilenet.compiler.calibration import calibration_inputs
from tvmc_mobilenet.compiler.quantize import Requantize, activation_bounds, quantize_network, sqnr_db
from tvmc_mobilenet.model.network import build_network
from tvmc_mobilenet.model.spec import LayerKind, ModelConfig


def test_requantization_is_float32_round_half_even_and_saturates():
    rng = np.random.default_rng(0)
    real = rng.uniform(1e-4, 0.05, 64)
    acc = rng.integers(-(1 << 20), 1 << 20, (1000, 64))
    rq = Requantize.of(real, -128, 127)
    assert rq.scale.dtype == np.float32
    got = rq.apply(acc)
    unclamped = np.rint(acc * real)  # the exact product, rounded once
    expected = np.clip(unclamped, -128, 127)
    assert np.max(np.abs(got - expected)) <= 1  # float32's scale and product can move a tie
    assert np.mean(got == expected) > 0.999
    assert got.min() == -128 and got.max() == 127  # saturation at both ends
    assert (got[unclamped > 127] == 127).all() and (got[unclamped < -128] == -128).all()
    halves = Requantize.of(np.array([0.5]), 0, 255).apply(np.array([[1], [3], [5], [-1]]))
    assert halves.ravel().tolist() == [0, 2, 2, 0]  # ties to even, as the module's nearbyint
    with pytest.raises(ValueError):
        Requantize.of(np.array([0.0]), 0, 255)
    with pytest.raises(ValueError):
        rq.apply(np.full((1, 64), 1 << 31))  # the module's accumulators are int32


def test_relu_and_relu6_are_the_clamp():
    assert activation_bounds("relu", 0.1) == (0, 255)
    assert activation_bounds("relu6", 6.0 / 255) == (0, 255)
    assert activation_bounds("relu6", 0.05) == (0, 120)  # 6 / 0.05
    rq = Requantize.of(np.array([0.5]), *activation_bounds("relu6", 0.05))
    assert rq.apply(np.array([[-10], [100], [1000]])).ravel().tolist() == [0, 50, 120]


@pytest.fixture(scope="module")
def tiny_quantized():
    config = ModelConfig(alpha=0.25, resolution=64)
    net = build_network(config, seed=3)
    data, info = calibration_inputs(None, 64, 16, seed=4)
    return net, quantize_network(net, data, info)


def test_scales_codes_and_biases(tiny_quantized):
    net, q = tiny_quantized
    assert q.input_scale > 0 and q.logits_scale > 0 and q.calibration["samples"] == 16
    assert [c.kind for c in q.convs][:3] == [LayerKind.CONV, LayerKind.DEPTHWISE, LayerKind.POINTWISE]
    for conv in q.convs:
        assert conv.weight.dtype == np.int8 and conv.bias.dtype == np.int32
        assert np.all(np.abs(conv.weight) <= 127)
        assert np.all(np.max(np.abs(conv.weight.reshape(-1, conv.weight.shape[-1])), axis=0) == 127)  # per channel, full range
        assert conv.requantize.low == 0 and conv.requantize.high == 255  # uint8 after ReLU
    for before, after in zip(q.convs, q.convs[1:], strict=False):
        assert after.input_scale == before.output_scale  # one scale per tensor
    assert q.fc_weight.shape == (net.fc.in_features, 1000) and q.fc_requantize.low == -127


def test_integer_reference_tracks_the_float_network(tiny_quantized):
    import torch

    net, q = tiny_quantized
    x = np.random.default_rng(9).standard_normal((8, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        exact = net(torch.from_numpy(x)).numpy()
    assert sqnr_db(exact, q.reference(x)) > 15


@pytest.mark.parametrize(
    ("alpha", "dense_input", "column_dot_lanes", "channel_multiple"),
    [
        (0.25, "uint8", None, None),
        (0.5, "uint8", None, None),
        (0.75, "uint8", None, None),
        (1.0, "uint8", None, None),
        (0.5, "int8", None, None),
        (0.75, "uint8", 8, None),
        (1.0, "uint8", 16, None),
        (0.25, "uint8", 16, 16),
        (0.75, "int8", None, 16),
    ],
)
def test_tvm_kernels_equal_the_integer_reference_across_alpha(alpha, dense_input, column_dot_lanes, channel_multiple):
    """Every int8 kernel kind (first conv, depthwise s1/s2, pointwise, pool, classifier) at the
    channel counts of MobileNet α, built for this host with our default schedules; the graph
    whose dense convolutions read int8 (Arm sdot's operands), which must compute the same; the
    graph whose depthwise kernels have a fourth, zero, row for a column dot product
    (schedules/cpu/depthwise_dot.py: vpdpbusd where this CPU has it and the channels fill its
    vectors, the widening schedule elsewhere); and the graph with every layer's channels padded
    to a multiple of 16 (α 0.25's 8 and α 0.75's 24), which must too."""
    import tvm
    from tvm import relax

    from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule, simplify_for_inference
    from tvmc_mobilenet.targets.registry import resolve_target

    config = ModelConfig(alpha=alpha, resolution=64, num_classes=100)
    net = build_network(config, seed=1)
    data, info = calibration_inputs(None, 64, 8, seed=2)
    q = quantize_network(net, data, info)
    target = resolve_target("host").tvm_target()
    graph = q.relax_module(dense_input, column_dot_lanes=column_dot_lanes, channel_multiple=channel_multiple)
    mod = schedule(legalize_and_fuse(simplify_for_inference(graph), target), target)
    vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=lower(target)), tvm.cpu())
    x = np.random.default_rng(5).standard_normal(config.input_shape, dtype=np.float32)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = q.reference(x)
    assert np.max(np.abs(got - expected)) <= q.logits_scale * (1 + 1e-6)  # ±1 quantum of the int8 logits
    if column_dot_lanes or channel_multiple:
        assert np.array_equal(got, expected)
    if dense_input == "int8":
        assert np.array_equal(got, expected)  # the offsets cancel exactly
        with pytest.raises(ValueError):
            q.relax_module("int4")


def test_depthwise_kernels_on_codes_less_128_equal_the_integer_reference():
    """The graph Arm's ``sdot`` takes (compiler/quantize.py:_depthwise_on_codes_less_128): the
    4-row depthwise convolutions read their uint8 codes less 128, padding included, with 128 · Σw
    added to their biases, so every accumulator and the logits are those of the reference. Run on
    this host's schedules (the column ``sdot`` itself runs on the emulated Pi 5:
    tests/devices/test_emulated.py)."""
    import tvm
    from tvm import relax

    from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule, simplify_for_inference
    from tvmc_mobilenet.targets.registry import resolve_target

    config = ModelConfig(alpha=0.5, resolution=64, num_classes=100)
    net = build_network(config, seed=1)
    data, info = calibration_inputs(None, 64, 8, seed=2)
    q = quantize_network(net, data, info)
    target = resolve_target("host").tvm_target()
    graph = q.relax_module("int8", column_dot_lanes=16, channel_multiple=4, column_dot_input="int8")
    assert "PaddedInput" in graph.script() and "uint8(128)" in graph.script()  # the codes less 128, made in the kernel
    mod = schedule(legalize_and_fuse(simplify_for_inference(graph), target), target)
    vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=lower(target)), tvm.cpu())
    x = np.random.default_rng(5).standard_normal(config.input_shape, dtype=np.float32)
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), q.reference(x))
    with pytest.raises(ValueError, match="column_dot_input"):
        q.relax_module("int8", column_dot_lanes=16, column_dot_input="int4")


@pytest.mark.parametrize("dense_input", ["uint8", "int8"])
def test_input_codes_round_half_even_and_saturate_in_tvm(dense_input):
    """The input's codes on this host (a float clamp, one lrint, the zero point and shift added as
    int32): inputs a half step from a code, far outside the codes' range and infinite give the
    NumPy reference's codes (round half to even, then clamp), so the same logits."""
    import tvm
    from tvm import relax

    from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule, simplify_for_inference
    from tvmc_mobilenet.targets.registry import resolve_target

    config = ModelConfig(alpha=0.25, resolution=32, num_classes=10)
    net = build_network(config, seed=3)
    data, info = calibration_inputs(None, 32, 4, seed=4)
    q = quantize_network(net, data, info)
    rng = np.random.default_rng(7)
    steps = rng.integers(-160, 160, size=config.input_shape) + 0.5  # half steps, past both ends of [-128, 127]
    x = (steps * q.input_scale).astype(np.float32)
    x.flat[:4] = [1e30, -1e30, np.inf, -np.inf]
    codes = q.quantize_input(x)
    low, high = q.input_range
    assert codes.min() == low - q.input_zero_point and codes.max() == high - q.input_zero_point
    target = resolve_target("host").tvm_target()
    graph = q.relax_module(dense_input)
    mod = schedule(legalize_and_fuse(simplify_for_inference(graph), target), target)
    vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=lower(target)), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, q.reference(x), rtol=0, atol=q.logits_scale * (1 + 1e-6))
    if dense_input == "int8":
        np.testing.assert_array_equal(got, q.reference(x))  # the offsets cancel exactly


def test_padded_channels_are_zero_and_leave_the_logits_alone():
    """``with_channels_padded``: α 0.25's 8-channel layers become 16 channels of which 8 are always
    0 (zero weights, zero bias); the NumPy execution of the padded graph gives the same logits."""
    config = ModelConfig(alpha=0.25, resolution=32, num_classes=10)
    net = build_network(config, seed=3)
    data, info = calibration_inputs(None, 32, 4, seed=4)
    q = quantize_network(net, data, info)
    padded = q.with_channels_padded(16)
    assert [c.weight.shape[3] for c in q.convs][:3] == [8, 8, 16]
    assert all(c.weight.shape[3] % 16 == 0 and c.bias.shape == (c.weight.shape[3],) for c in padded.convs)
    assert padded.convs[1].groups == 16 and padded.convs[2].weight.shape[2] == 16  # the depthwise layer, and the pointwise reading it
    assert not padded.convs[0].weight[..., 8:].any() and not padded.convs[2].weight[:, :, 8:].any()
    assert padded.with_channels_padded(16).convs[0].weight.shape == padded.convs[0].weight.shape
    x = np.random.default_rng(6).standard_normal(config.input_shape, dtype=np.float32)
    np.testing.assert_array_equal(padded.reference(x), q.reference(x))


def test_rounds_before_clamping_only_where_int32_holds_every_product(tiny_quantized):
    """On CPUs the module rounds to int32 and then clamps (LLVM narrows with saturation), which
    equals clamping first only while no ``(acc + bias) · scale`` can leave int32. A layer whose
    scale breaks that bound keeps the float clamp: its huge products still saturate to 255 (an
    int32 conversion would have wrapped them to 0)."""
    import copy

    import tvm
    from tvm import relax

    from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule, simplify_for_inference
    from tvmc_mobilenet.compiler.quantize import _scaled_fits_int32
    from tvmc_mobilenet.targets.registry import resolve_target

    _, q = tiny_quantized
    assert all(_scaled_fits_int32(c.weight, c.bias, c.requantize.scale) for c in q.convs)
    huge = copy.deepcopy(q)
    layer = huge.convs[2]  # the first pointwise convolution
    layer.requantize = Requantize.of(layer.requantize.scale.astype(np.float64) * 1e9, layer.requantize.low, layer.requantize.high)
    assert not _scaled_fits_int32(layer.weight, layer.bias, layer.requantize.scale)
    target = resolve_target("host").tvm_target()
    mod = schedule(legalize_and_fuse(simplify_for_inference(huge.relax_module()), target), target)
    vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=lower(target)), tvm.cpu())
    x = np.random.default_rng(5).standard_normal(huge.input_shape, dtype=np.float32)
    assert np.max(np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - huge.reference(x))) <= huge.logits_scale * (1 + 1e-6)


@pytest.mark.parametrize(
    ("mcpu", "instruction"),
    [
        (None, r"\bvpdpbusd\s+%zmm"),  # this host: AVX-512 VNNI
        ("alderlake", r"\{vex\} vpdpbusd\s+%ymm"),  # AVX-VNNI, no AVX-512
        ("haswell", r"\bvpmaddwd\s+%ymm"),  # plain AVX2
    ],
)
def test_int8_dense_kernels_use_the_cpus_dot_product(tmp_path, mcpu, instruction):
    """The pointwise kernels, the first 3×3 convolution and the classifier (a 1×1 convolution on
    the pooled 1×1 map) are register tiles of the CPU's int8 dot product (schedules/cpu/conv_dot.py): AVX-512 VNNI, AVX-VNNI on 256-bit vectors, or AVX2's
    vpmaddwd on bytes widened to 16 bits; each build runs here and equals the integer reference.
    (α 0.5: the first convolution's 16 channels fill an AVX-512 VNNI vector; at α 0.25 its 8
    would fall to the next instruction the CPU has.)"""
    import re
    import subprocess
    import tarfile

    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.options import ModelOptions, TargetOptions
    from tvmc_mobilenet.schedules.cpu.conv_dot import AVX2, AVX_VNNI, VNNI
    from tvmc_mobilenet.targets.registry import resolve_target

    needed = {None: VNNI, "alderlake": AVX_VNNI, "haswell": AVX2}[mcpu]
    if not needed.available(resolve_target("host").tvm_target()):
        pytest.skip(f"this CPU has no {needed.feature} to run the {mcpu or 'host'} build on")
    target = TargetOptions(name="host" if mcpu is None else json.dumps({"kind": "llvm", "mcpu": mcpu, "num-cores": 2}))
    config = BuildConfig(model=ModelOptions(alpha=0.5, resolution=64, quantize="int8"), target=target, output=tmp_path / "q.tar")
    result = build_model(config)
    assert result.verification["status"] == "passed" and result.verification["max_abs_error"] == 0
    dense = [k for k in result.manifest["kernels"] if k["kind"] in ("pointwise", "conv")]
    assert sum(k["calls"] for k in dense) == 15  # every layer's and the classifier's, weights repacked at compile time
    assert all(k["name"].endswith("_prepacked") for k in dense)
    with tarfile.open(result.artifact_path) as tar:
        (tmp_path / "model.so").write_bytes(tar.extractfile("model.so").read())
    disassembly = subprocess.run(["objdump", "-d", str(tmp_path / "model.so")], capture_output=True, text=True, timeout=120).stdout
    assert len(re.findall(instruction, disassembly)) >= len(dense)


@pytest.mark.nvcc
def test_int8_builds_for_a_cuda_target(tmp_path):
    """A CUDA target gets the same integer graph with ``round`` and a cast where CPUs round with
    LLVM's ``lrint`` (which CUDA's code generator cannot emit); compile-only here."""
    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.options import ModelOptions, TargetOptions

    config = BuildConfig(
        model=ModelOptions(alpha=0.25, resolution=64, quantize="int8"), target=TargetOptions(name="h100"), output=tmp_path / "q.tar"
    )
    result = build_model(config)
    assert result.manifest["library"]["gpu_code"] is not None
    assert result.manifest["quantization"]["scheme"]
