"""Model → TVM Relax: PyTorch networks through ``torch.export``, user ONNX files through TVM's
ONNX frontend. Parameters are bound as constants so that the built library is self-contained.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tvmc_mobilenet.errors import BadInputError, message_line

if TYPE_CHECKING:
    import torch
    import tvm


@dataclass
class ImportedModel:
    """A Relax module with one static-shape input, and how to compute its reference output."""

    mod: tvm.IRModule
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    #: The framework that computes the reference output ("pytorch" or "onnxruntime").
    reference_framework: str
    _reference_fn: object  # callable: np.ndarray -> np.ndarray

    def reference(self, data: np.ndarray) -> np.ndarray:
        return self._reference_fn(data)


def import_pytorch(net: torch.nn.Module, input_shape: tuple[int, ...]) -> ImportedModel:
    """Export ``net`` (in eval mode) with ``torch.export`` and translate it to Relax."""
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    example = torch.zeros(input_shape, dtype=torch.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations inside export
        exported = torch.export.export(net.eval(), (example,))
        mod = from_exported_program(exported, keep_params_as_input=False, unwrap_unit_return_tuple=True)
    input_name = mod["main"].params[0].name

    def reference(data: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(data)).numpy()

    return ImportedModel(mod, input_name, tuple(input_shape), "float32", "pytorch", reference)


def import_onnx(path: Path, batch: int | None = None) -> ImportedModel:
    """Import a user's ONNX file; the input shape is read from the file.

    A symbolic batch dimension takes ``batch`` (default 1); any other symbolic dimension is an
    error, since the tool builds for one static shape.
    """
    try:
        import onnx
    except ImportError:
        raise BadInputError("ONNX import needs the onnx package: pip install 'tvmc-mobilenet[onnx]'") from None
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"model file {str(path)!r} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise BadInputError(f"model file {str(path)!r} is not a valid ONNX model ({type(exc).__name__}: {message_line(exc, 0)})") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise BadInputError(f"model file {str(path)!r} has {len(inputs)} inputs; expected one image input (N, C, H, W)")
    graph_input = inputs[0]
    elem_type = graph_input.type.tensor_type.elem_type
    if elem_type != onnx.TensorProto.FLOAT:
        raise BadInputError(
            f"model input {graph_input.name!r} has ONNX element type {onnx.TensorProto.DataType.Name(elem_type)}; expected FLOAT (float32)"
        )
    shape = _static_input_shape(path, graph_input, batch)
    from tvm.relax.frontend.onnx import from_onnx

    try:
        mod = from_onnx(model, shape_dict={graph_input.name: list(shape)}, keep_params_in_input=False)
    except Exception as exc:
        raise BadInputError(f"TVM cannot import {str(path)!r}: {type(exc).__name__}: {message_line(exc, 0)}") from None
    model_bytes = path.read_bytes()

    def reference(data: np.ndarray) -> np.ndarray:
        try:
            import onnxruntime
        except ImportError:
            raise BadInputError("verifying an ONNX model needs onnxruntime: pip install 'tvmc-mobilenet[onnx]'") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 2
        session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        return session.run(None, {graph_input.name: data})[0]

    return ImportedModel(mod, graph_input.name, shape, "float32", "onnxruntime", reference)


def _static_input_shape(path: Path, graph_input, batch: int | None) -> tuple[int, ...]:
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise BadInputError(
            f"model input {graph_input.name!r} in {str(path)!r} has rank {len(dims)}; expected an image batch of rank 4 (N, C, H, W)"
        )
    shape = []
    for axis, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        elif axis == 0:
            shape.append(batch or 1)
        else:
            name = dim.dim_param or "?"
            raise BadInputError(
                f"model input {graph_input.name!r} in {str(path)!r} has a dynamic dimension {name!r} at "
                f"axis {axis}; export the model with a fixed input size (only the batch may be dynamic)"
            )
    if batch is not None and shape[0] != batch:
        raise BadInputError(f"model input {graph_input.name!r} has a fixed batch of {shape[0]}, but --batch {batch} was given")
    return tuple(shape)
