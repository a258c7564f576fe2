"""The network a command works on, imported: the built-in MobileNet (α, ρ, variant) or a user's
ONNX or TFLite file, as :class:`~tvmc_mobilenet.options.ModelOptions` names it, turned into a Relax module
with BatchNorm folded (:func:`import_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from tvmc_mobilenet.model.preprocess import Normalisation, default_normalisation, normalisation
from tvmc_mobilenet.options import ModelOptions


@dataclass
class PreparedModel:
    """A model imported into Relax, simplified for inference, with its description."""

    imported: Any  # frontend.ImportedModel
    mod: Any  # the simplified Relax IRModule
    #: What the manifest and reports say about the model.
    description: dict[str, Any]
    #: The quantized network (``--quantize int8``), with every scale; None for fp32.
    quantized: Any = None  # quantize.QuantizedNetwork
    #: The fp32 network's logits for an input (what a quantized model is compared with).
    float_reference: Callable[[Any], Any] | None = None

    def normalisation(self, options: ModelOptions) -> Normalisation:
        return image_normalisation(options, self.description["source"], self.imported.input_shape)


def image_normalisation(options: ModelOptions, source: str, input_shape: tuple[int, ...]) -> Normalisation:
    """How images are normalised for a model: ``options.preprocess``, else the default of its
    source and input layout."""
    if options.preprocess is not None:
        return normalisation(options.preprocess)
    return default_normalisation(source, input_shape)


def import_model(options: ModelOptions, log: Callable[[str], None] = lambda _msg: None, target=None) -> PreparedModel:
    """Build or read the network, import it into Relax and fold BatchNorm. A quantized network is
    written for ``target`` (a ``tvm.target.Target``): its dense convolutions read the operand
    type of the target's dot-product instruction (see :meth:`QuantizedNetwork.relax_module`)."""
    from tvmc_mobilenet.compiler.frontend import import_onnx, import_pytorch, import_tflite, model_file_format, onnx_is_qdq, tflite_is_integer
    from tvmc_mobilenet.compiler.passes import simplify_for_inference
    from tvmc_mobilenet.runtime.artifact import sha256_bytes

    if options.model_file is not None:
        path = Path(options.model_file)
        kind = model_file_format(path)
        description: dict[str, Any] = {
            "source": kind,
            "file": path.name,
            "sha256": sha256_bytes(path.read_bytes()),
            "name": options.model_name,
        }
        if tflite_is_integer(path) if kind == "tflite" else onnx_is_qdq(path):
            return _integer_file(options, path, kind, description, log, target)
        log(f"importing {'TFLite' if kind == 'tflite' else 'ONNX'} model {path}")
        importer = import_tflite if kind == "tflite" else import_onnx
        imported = importer(path, batch=options.batch if options.batch != 1 else None)
    else:
        from tvmc_mobilenet.model.network import build_network

        config = options.model_config()
        weights = f"state_dict {options.weights}" if options.weights else f"random, seed {options.seed}"
        log(f"building {config.name} in PyTorch ({weights})")
        net = build_network(config, seed=options.seed, weights=options.weights)
        description = {"source": "builtin", "name": options.model_name, **config.to_json(), "weights": weights}
        if options.quantize:
            return _quantized(options, net, description, log, target)
        log("exporting with torch.export and importing into TVM Relax")
        imported = import_pytorch(net, config.input_shape)
    return PreparedModel(imported, simplify_for_inference(imported.mod), description)


def _quantized(options: ModelOptions, net, description: dict[str, Any], log: Callable[[str], None], target=None) -> PreparedModel:
    """The built-in network quantized to int8 (compiler/quantize.py), as an integer Relax graph
    whose reference is the same integer graph executed by NumPy."""
    import torch

    from tvmc_mobilenet.compiler.calibration import calibration_inputs
    from tvmc_mobilenet.compiler.frontend import ImportedModel
    from tvmc_mobilenet.compiler.passes import simplify_for_inference
    from tvmc_mobilenet.compiler.quantize import quantize_network
    from tvmc_mobilenet.options import DEFAULT_CALIBRATION_SAMPLES

    config = options.model_config()
    norm = image_normalisation(options, "builtin", config.input_shape)
    data, info = calibration_inputs(options.calibration, config.resolution, DEFAULT_CALIBRATION_SAMPLES, seed=options.seed + 1, norm=norm)
    log(f"quantizing to int8, calibrated on {info['samples']} inputs ({info['source']})")
    quantized = quantize_network(net, data, info)

    def float_reference(x):
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    dense_input = _dense_input(target)
    graph = _int8_graph(quantized, target)
    imported = ImportedModel(graph, "input", config.input_shape, "float32", QUANTIZED_REFERENCE, quantized.reference)
    description = {**description, "quantize": options.quantize, "dense_input": dense_input}
    return PreparedModel(imported, simplify_for_inference(imported.mod), description, quantized, float_reference)


def _integer_file(options: ModelOptions, path: Path, kind: str, description: dict[str, Any], log: Callable[[str], None],
                  target=None) -> PreparedModel:  # fmt: skip
    """A full-integer ``.tflite`` file (compiler/tflite_int8.py) or a QDQ ONNX one
    (compiler/onnx_qdq.py) read with its own scales into the same integer Relax graph as
    ``--quantize int8``; its reference is LiteRT or ONNX Runtime running the file."""
    from tvmc_mobilenet.compiler.frontend import ImportedModel, read_int8_tflite, read_qdq_onnx
    from tvmc_mobilenet.compiler.passes import simplify_for_inference

    what, read, framework = {"tflite": ("full-integer TFLite", read_int8_tflite, "litert"), "onnx": ("QDQ ONNX", read_qdq_onnx, "onnxruntime")}[kind]
    log(f"reading the {what} model {path} onto the int8 kernels")
    quantized, input_name, reference = read(path, batch=options.batch if options.batch != 1 else None)
    dense_input = _dense_input(target)
    graph = _int8_graph(quantized, target)
    imported = ImportedModel(graph, input_name, quantized.input_shape, "float32", framework, reference)
    description = {**description, "quantize": "int8 (the file's)", "dense_input": dense_input}
    return PreparedModel(imported, simplify_for_inference(imported.mod), description, quantized)


def _int8_graph(quantized, target):
    """The quantized network's Relax graph in the operand types and kernel shapes ``target``'s
    int8 kernels take (schedules/cpu/conv_dot.py, schedules/cpu/depthwise_dot.py)."""
    from tvmc_mobilenet.schedules.cpu.conv_dot import int8_channel_multiple
    from tvmc_mobilenet.schedules.cpu.depthwise_dot import column_dot_input, column_dot_lanes

    if target is None or target.kind.name != "llvm":
        return quantized.relax_module(_dense_input(target), llvm_rounding=target is None)
    return quantized.relax_module(
        _dense_input(target),
        column_dot_lanes=column_dot_lanes(target),
        channel_multiple=int8_channel_multiple(target),
        column_dot_input=column_dot_input(target),
    )


def _dense_input(target) -> str:
    from tvmc_mobilenet.schedules.cpu.conv_dot import int8_dense_input

    return int8_dense_input(target) if target is not None else "uint8"


#: What verifies a quantized build: the integer graph executed by NumPy, no TVM kernel involved.
QUANTIZED_REFERENCE = "numpy (integer execution of the quantized graph)"
