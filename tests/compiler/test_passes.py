"""Graph passes: BatchNorm is folded away, numerics are kept."""

import numpy as np
import pytest
import tvm
from tvm import relax

from tvmc_mobilenet.compiler.frontend import import_onnx, import_pytorch
from tvmc_mobilenet.compiler.passes import RUNTIME_ARITHMETIC_OPS, relax_op_counts, simplify_for_inference
from tvmc_mobilenet.model.network import build_network
from tvmc_mobilenet.model.spec import ModelConfig

from tests.compiler.onnx_models import conv_bn_model


def _run(mod, data):
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(data))
    return (out if hasattr(out, "numpy") else out[0]).numpy()


def test_batchnorm_is_folded_into_the_convolutions():
    config = ModelConfig(alpha=0.25, resolution=64)
    imported = import_pytorch(build_network(config), config.input_shape)
    before = relax_op_counts(imported.mod)
    assert before["relax.nn.batch_norm"] == 27
    after = relax_op_counts(simplify_for_inference(imported.mod))
    assert not RUNTIME_ARITHMETIC_OPS & set(after), after
    assert after["relax.nn.conv2d"] == 27
    assert after["relax.add"] == 28  # one bias per convolution, one for the classifier


def test_folding_keeps_the_numerics():
    config = ModelConfig(alpha=0.25, resolution=64)
    imported = import_pytorch(build_network(config, seed=5), config.input_shape)
    data = np.random.default_rng(1).standard_normal(config.input_shape, dtype=np.float32)
    ref = imported.reference(data)
    out = _run(simplify_for_inference(imported.mod), data)
    assert np.max(np.abs(out - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_batchnorm_after_a_biased_convolution_is_folded(tmp_path):
    pytest.importorskip("onnxruntime")
    imported = import_onnx(conv_bn_model(tmp_path / "m.onnx"))
    assert relax_op_counts(imported.mod)["relax.nn.batch_norm"] == 1
    mod = simplify_for_inference(imported.mod)
    assert not RUNTIME_ARITHMETIC_OPS & set(relax_op_counts(mod))
    data = np.random.default_rng(2).standard_normal(imported.input_shape, dtype=np.float32)
    ref = imported.reference(data)
    assert np.max(np.abs(_run(mod, data) - ref)) <= 1e-4 * np.max(np.abs(ref))
