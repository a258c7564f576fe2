"""`build --model m_qdq.onnx`: a MobileNet quantized by ONNX Runtime's ``quantize_static`` (QDQ)
read with its own scales and zero points onto our int8 kernels, verified against ONNX Runtime on
the same file; what cannot be mapped ends in one line."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="quantizing and verifying ONNX models needs onnxruntime (the onnx extra)")

from tests.compiler.onnx_models import mobilenet_onnx, qdq_model  # noqa: E402
from tvmc_mobilenet.build import BuildConfig, build_model  # noqa: E402
from tvmc_mobilenet.compiler.frontend import read_qdq_onnx  # noqa: E402
from tvmc_mobilenet.errors import BadInputError  # noqa: E402
from tvmc_mobilenet.options import ModelOptions  # noqa: E402

SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mobilenet_onnx(tmp_path_factory.mktemp("qdq") / "mobilenet.onnx")


@pytest.fixture(scope="module")
def qdq_onnx(float_onnx):
    return qdq_model(float_onnx, float_onnx.with_name("mobilenet_qdq.onnx"), shape=SHAPE)


def _inputs(count=3):
    rng = np.random.default_rng(11)
    return [rng.standard_normal(SHAPE, dtype=np.float32) for _ in range(count)]


@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_the_files_integer_graph_in_numpy_is_onnx_runtime_bit_for_bit(float_onnx, qdq_onnx, activations):
    """ONNX Runtime fuses each DQ → Conv → Q into QLinearConv, whose requantization is float32 as
    ours: the NumPy execution of our reading of the file gives its output exactly, for uint8
    activations (an asymmetric input: a zero point of its own) and int8 ones."""
    path = qdq_onnx if activations == "uint8" else qdq_model(float_onnx, float_onnx.with_name("int8_acts.onnx"), shape=SHAPE, activations="int8")
    net, name, onnxruntime = read_qdq_onnx(path)
    assert name == "input" and net.input_layout == "NCHW" and net.input_zero_point != 0 and len(net.convs) == 27
    for x in _inputs():
        expected = onnxruntime(x)
        assert np.ptp(expected) > 20 * net.logits_scale
        np.testing.assert_array_equal(net.reference(x), expected)


def test_a_qdq_onnx_builds_onto_the_int8_kernels_and_matches_onnx_runtime(qdq_onnx, tmp_path):
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    result = build_model(BuildConfig(model=ModelOptions(model_file=qdq_onnx), output=tmp_path / "q.tar"))
    m = result.manifest
    assert m["model"]["source"] == "onnx" and m["model"]["quantize"] == "int8 (the file's)"
    assert m["reference"]["framework"] == "onnxruntime" and m["verification"]["max_abs_error"] == 0
    convs = [k for k in m["kernels"] if k["kind"] in ("pointwise", "depthwise")]
    assert convs and all(k["args"][0][1] in ("uint8", "int8") for k in convs)
    assert m["input"]["preprocess"]["name"] == "torch" and m["quantization"]["against_fp32"]["status"] == "skipped"
    model = load_local(open_artifact(result.artifact_path))
    _net, _name, onnxruntime = read_qdq_onnx(qdq_onnx)
    for x in _inputs(2):
        np.testing.assert_array_equal(model.run(x), onnxruntime(x))


@pytest.mark.faults("bad_input")
def test_qdq_models_we_cannot_map_are_named_in_one_line(float_onnx, tmp_path):
    asymmetric = qdq_model(float_onnx, tmp_path / "uint8_weights.onnx", shape=SHAPE, weights="uint8")
    with pytest.raises(BadInputError, match=r"has weights of uint8 .*; only symmetric int8 weights are read"):
        build_model(BuildConfig(model=ModelOptions(model_file=asymmetric), output=tmp_path / "a.tar"))
    import onnx
    from onnx import helper

    model = onnx.load(str(float_onnx))  # a MaxPool where the first ReLU was
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type, relu.name = "MaxPool", "pool_in_the_middle"
    relu.attribute.extend([helper.make_attribute("kernel_shape", [1, 1])])
    onnx.save(model, str(tmp_path / "maxpool.onnx"))
    maxpool = qdq_model(tmp_path / "maxpool.onnx", tmp_path / "maxpool_qdq.onnx", shape=SHAPE)
    with pytest.raises(BadInputError, match=r"operators MaxPool cannot be mapped onto the int8 kernels"):
        build_model(BuildConfig(model=ModelOptions(model_file=maxpool), output=tmp_path / "m.tar"))
    assert not (tmp_path / "a.tar").exists() and not (tmp_path / "m.tar").exists()
