"""Import into Relax: PyTorch through torch.export, ONNX files with their input shape."""

import numpy as np
import pytest

from tvmc_mobilenet.compiler.frontend import import_onnx, import_pytorch
from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.network import build_network
from tvmc_mobilenet.model.spec import ModelConfig

from tests.compiler.onnx_models import conv_bn_model

pytest.importorskip("onnx", reason="the onnx extra is not installed")


def test_pytorch_import_binds_parameters_as_constants():
    config = ModelConfig(alpha=0.25, resolution=64, batch=2)
    imported = import_pytorch(build_network(config), config.input_shape)
    params = imported.mod["main"].params
    assert len(params) == 1  # the image only: weights are constants in the module
    assert imported.input_shape == (2, 3, 64, 64)
    assert imported.reference_framework == "pytorch"
    assert imported.reference(np.zeros(config.input_shape, np.float32)).shape == (2, 1000)


def test_onnx_input_shape_comes_from_the_file(tmp_path):
    imported = import_onnx(conv_bn_model(tmp_path / "m.onnx", size=64))
    assert imported.input_name == "image"
    assert imported.input_shape == (1, 3, 64, 64)
    assert imported.reference_framework == "onnxruntime"


def test_onnx_symbolic_batch_takes_the_requested_batch(tmp_path):
    path = conv_bn_model(tmp_path / "m.onnx", batch="N")
    assert import_onnx(path).input_shape[0] == 1
    assert import_onnx(path, batch=4).input_shape == (4, 3, 32, 32)


def test_onnx_fixed_batch_conflicts_with_another_batch(tmp_path):
    with pytest.raises(BadInputError, match=r"fixed batch of 1, but --batch 4 was given"):
        import_onnx(conv_bn_model(tmp_path / "m.onnx"), batch=4)


def test_onnx_model_exported_from_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    net = build_network(ModelConfig(alpha=0.25, resolution=64))
    path = tmp_path / "mobilenet.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, 64, 64),), str(path), dynamo=False, input_names=["input"])
    imported = import_onnx(path)
    assert imported.input_shape == (1, 3, 64, 64)
    data = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(data)).numpy()
    np.testing.assert_allclose(imported.reference(data), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.faults("bad_input")
def test_onnx_bad_files(tmp_path):
    not_onnx = tmp_path / "x.onnx"
    not_onnx.write_bytes(b"\x00\x01 this is not protobuf \xff")
    with pytest.raises(BadInputError, match=r"is not a valid ONNX model"):
        import_onnx(not_onnx)
    with pytest.raises(BadInputError, match=r"does not exist"):
        import_onnx(tmp_path / "missing.onnx")


@pytest.mark.faults("bad_input")
def test_onnx_wrong_rank_and_dynamic_size(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    def save(shape, name):
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(tmp_path / name))
        return tmp_path / name

    with pytest.raises(BadInputError, match=r"has rank 2; expected an image batch of rank 4"):
        import_onnx(save([1, 10], "rank2.onnx"))
    with pytest.raises(BadInputError, match=r"dynamic dimension 'height' at axis 2"):
        import_onnx(save([1, 3, "height", 32], "dyn.onnx"))
