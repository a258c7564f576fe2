"""Small ONNX files for tests, written with onnx.helper (no exporter in the loop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def conv_bn_model(path: Path, *, batch: int | str = 1, size: int = 32, channels: int = 8, classes: int = 10) -> Path:
    """Conv (with bias) → BatchNormalization → Relu → GlobalAveragePool → Flatten → Gemm.

    ``batch`` may be a string to make the batch dimension symbolic.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, array):
        return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)

    inits = [
        init("w", rng.standard_normal((channels, 3, 3, 3)) * 0.3),
        init("b", rng.standard_normal(channels)),
        init("gamma", 0.5 + rng.random(channels)),
        init("beta", rng.standard_normal(channels) * 0.2),
        init("mean", rng.standard_normal(channels)),
        init("var", 0.5 + rng.random(channels)),
        init("fc_w", rng.standard_normal((classes, channels)) * 0.3),
        init("fc_b", rng.standard_normal(classes) * 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], epsilon=1e-5),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def qdq_model(float_model: Path, path: Path, *, shape: tuple[int, ...], activations: str = "uint8", weights: str = "int8",
              per_channel: bool = True) -> Path:  # fmt: skip
    """``float_model`` quantized by ONNX Runtime's ``quantize_static`` in QDQ form, as a user
    would: calibrated on 8 standard-normal inputs (the reference input distribution)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    import onnx

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    input_name = onnx.load(str(float_model)).graph.input[0].name
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = [rng.standard_normal(shape, dtype=np.float32) for _ in range(8)]

        def get_next(self):
            return {input_name: self.left.pop()} if self.left else None

    quantize_static(str(float_model), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    weight_type=types[weights], activation_type=types[activations])  # fmt: skip
    return path


def mobilenet_onnx(path: Path, *, alpha: float = 0.25, resolution: int = 64, seed: int = 0) -> Path:
    """The built-in network (random weights) exported to ONNX by torch.onnx."""
    import torch

    from tvmc_mobilenet.model.network import build_network
    from tvmc_mobilenet.model.spec import ModelConfig

    config = ModelConfig(alpha=alpha, resolution=resolution)
    net = build_network(config, seed=seed).eval()
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros(config.input_shape),), str(path), input_names=["input"], output_names=["logits"], dynamo=False)
    return path
