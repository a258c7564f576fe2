"""Model → TVM Relax: PyTorch networks through ``torch.export``, user ONNX and TFLite files through
TVM's ONNX and TFLite frontends. Parameters are bound as constants so that the built library is
self-contained.
"""

from __future__ import annotations

import functools
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


def _read_onnx(path: Path, batch: int | None):
    """(the checked ``onnx.ModelProto``, its image input, that input's static shape)."""
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
    return model, graph_input, _static_input_shape(path, graph_input, batch)


def onnx_is_qdq(path: Path) -> bool:
    """Whether an ONNX file is quantized in QDQ form (compiler/onnx_qdq.py)."""
    from tvmc_mobilenet.compiler.onnx_qdq import is_qdq_onnx

    return is_qdq_onnx(_read_onnx(path, None)[0])


def import_onnx(path: Path, batch: int | None = None) -> ImportedModel:
    """Import a user's ONNX file; the input shape is read from the file.

    A symbolic batch dimension takes ``batch`` (default 1); any other symbolic dimension is an
    error, since the tool builds for one static shape.
    """
    model, graph_input, shape = _read_onnx(path, batch)
    from unittest import mock

    from tvm.relax.frontend.onnx import from_onnx, onnx_frontend

    converters = {**onnx_frontend._get_convert_map(), **_onnx_converters()}
    try:
        with mock.patch.object(onnx_frontend, "_get_convert_map", lambda: converters):
            mod = from_onnx(model, shape_dict={graph_input.name: list(shape)}, keep_params_in_input=False)
    except Exception as exc:
        raise BadInputError(f"TVM cannot import {str(path)!r}: {type(exc).__name__}: {message_line(exc, 0)}") from None
    return ImportedModel(mod, graph_input.name, shape, "float32", "onnxruntime", _onnxruntime_reference(Path(path).read_bytes(), graph_input.name))


@functools.cache
def _onnx_converters() -> dict[str, type]:
    """TVM's ONNX converters for ``Clip`` and constant ``Pad``, emitting Relax operators
    (``maximum``/``minimum``, ``nn.pad``) where TVM 0.27's emit TE kernels: a TE kernel is opaque
    to the layout conversion, so every ReLU6 of a TensorFlow export (``Clip(0, 6)``) cost two
    transposes and two kernels of its own; as Relax operators they follow the convolutions'
    NHWC layout and fuse into their epilogues, and a zero ``Pad`` before a convolution folds into
    its padding (compiler/passes.py)."""
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend as onnx_ops

    class RelaxClip(onnx_ops.Clip):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            dtype = inputs[0].ty.dtype
            low, high = relax.const(float(attr.get("min", -np.inf)), dtype), relax.const(float(attr.get("max", np.inf)), dtype)
            return bb.emit(relax.op.minimum(bb.emit(relax.op.maximum(inputs[0], low)), high))

        @classmethod
        def _impl_v13(cls, bb, inputs, attr, params):
            x = inputs[0]
            if inputs[1] is not None:
                x = bb.emit(relax.op.maximum(x, cls._sanitize_nan_clip_bound(bb, inputs[1], for_min=True)))
            if inputs[2] is not None:
                x = bb.emit(relax.op.minimum(x, cls._sanitize_nan_clip_bound(bb, inputs[2], for_min=False)))
            return x

        @classmethod
        def _impl_v11(cls, bb, inputs, attr, params):
            return cls._impl_v13(bb, inputs, attr, params)

    class RelaxPad(onnx_ops.Pad):
        @classmethod
        def _lower_pad(cls, bb, inputs, attr, params, allowed_modes):
            if attr.get("mode", b"constant").decode("utf-8") != "constant":
                return super()._lower_pad(bb, inputs, attr, params, allowed_modes)
            before, after, value = cls._parse_pads_and_axes(inputs, params)
            width = [int(v) for pair in zip(before, after) for v in pair]
            return bb.emit(relax.op.nn.pad(inputs[0], width, pad_value=float(value or 0.0)))

    return {"Clip": RelaxClip, "Pad": RelaxPad}


def read_qdq_onnx(path: Path, batch: int | None = None):
    """A QDQ ONNX file as (``QuantizedNetwork``, input name, ONNX Runtime's reference on the file)."""
    from tvmc_mobilenet.compiler.onnx_qdq import read_qdq_onnx as read

    model, graph_input, shape = _read_onnx(path, batch)
    net = read(model, path, graph_input.name, shape)
    return net, graph_input.name, _onnxruntime_reference(Path(path).read_bytes(), graph_input.name)


def _onnxruntime_reference(model_bytes: bytes, input_name: str):
    def reference(data: np.ndarray) -> np.ndarray:
        try:
            import onnxruntime
        except ImportError:
            raise BadInputError("verifying an ONNX model needs onnxruntime: pip install 'tvmc-mobilenet[onnx]'") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 2
        session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        return session.run(None, {input_name: data})[0]

    return reference


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


#: Bytes 4–8 of a TFLite flatbuffer (its file identifier).
TFLITE_IDENTIFIER = b"TFL3"


def model_file_format(path: Path) -> str:
    """``onnx`` or ``tflite``, from the file's contents (a TFLite flatbuffer's identifier) or,
    failing that, its suffix; anything else is an error that says what the file looks like."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"model file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if path.suffix.lower() == ".tflite":
        raise BadInputError(f"model file {str(path)!r} is named .tflite but is no TFLite flatbuffer (no 'TFL3' identifier)")
    kind = _looks_like(head)
    if kind is not None:
        raise BadInputError(f"model file {str(path)!r} is neither ONNX nor TFLite; it looks like {kind}")
    return "onnx"  # ONNX (protobuf) has no signature: the ONNX importer says if it is not one


def _looks_like(head: bytes) -> str | None:
    """What a file that is no model of ours appears to be, from its first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch checkpoint? give it with --weights)"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] in (2, 3, 4, 5):
        return "a Python pickle (a PyTorch checkpoint? give it with --weights)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a Keras .h5 model: convert it to .tflite or ONNX first)"
    if head[:1] in (b"{", b"["):
        return "JSON text"
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG")):
        return "an image (classify images with `run --image`)"
    return None


@functools.cache
def _tflite_converter():
    """TVM's TFLite OperatorConverter (made on first use), with Reshape taking its output shape
    from the file where the shape operand is computed in the graph (a Keras model exported with a
    dynamic batch computes it with Shape/StridedSlice/Pack, which TVM 0.27's converter cannot turn
    into a static shape; the file stores every tensor's static shape)."""
    from tvm import relax
    from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

    class StaticReshape(OperatorConverter):
        def convert_reshape(self, op):
            inputs, outputs = self.get_input_tensors(op), self.get_output_tensors(op)
            if len(inputs) == 2 and self.has_expr(inputs[1].tensor_idx) and not inputs[0].qnn_params:
                shape = [int(d) for d in outputs[0].tensor.ShapeAsNumpy()]
                return relax.op.reshape(self.get_expr(inputs[0].tensor_idx), shape)
            return super().convert_reshape(op)

    return StaticReshape


def _read_tflite(path: Path):
    """(the parsed ``tflite.Model``, the file's bytes); one line when the tflite package is
    missing or the file cannot be read."""
    try:
        import tflite
    except ImportError:
        raise BadInputError("TFLite import needs the tflite package: pip install 'tvmc-mobilenet[tflite]'") from None
    path = Path(path)
    model_bytes = path.read_bytes()
    try:
        model = tflite.Model.GetRootAsModel(model_bytes, 0)
        subgraph = model.Subgraphs(0)
        inputs = subgraph.InputsLength()
    except Exception as exc:
        raise BadInputError(f"model file {str(path)!r} is not a readable TFLite model ({type(exc).__name__}: {message_line(exc, 0)})") from None
    if inputs != 1:
        raise BadInputError(f"model file {str(path)!r} has {inputs} inputs; expected one image input")
    return model, model_bytes


def tflite_is_integer(path: Path) -> bool:
    """Whether a ``.tflite`` file is full-integer (int8 input, or a QUANTIZE first)."""
    from tvmc_mobilenet.compiler.tflite_int8 import is_integer_tflite

    return is_integer_tflite(_read_tflite(path)[0])


def _check_batch(name: str, shape: tuple[int, ...], batch: int | None) -> None:
    if batch is not None and batch != shape[0]:
        raise BadInputError(f"model input {name!r} has a fixed batch of {shape[0]}, but --batch {batch} was given")


def import_tflite(path: Path, batch: int | None = None) -> ImportedModel:
    """Import a user's float ``.tflite`` file through TVM's Relax TFLite frontend; the reference
    output is LiteRT's (``ai-edge-litert``) for the same file."""
    model, model_bytes = _read_tflite(path)
    subgraph = model.Subgraphs(0)
    tensor = subgraph.Tensors(subgraph.Inputs(0))
    name = tensor.Name().decode()
    dtype = _TFLITE_TYPES.get(tensor.Type(), f"type {tensor.Type()}")
    if dtype != "float32":
        raise BadInputError(
            f"model input {name!r} of {str(path)!r} is {dtype}; a .tflite model takes float32 input, or int8 (full-integer: "
            "TensorFlow's converter with TFLITE_BUILTINS_INT8)"
        )
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
    if len(shape) != 4 or min(shape[1:]) < 1:
        raise BadInputError(f"model input {name!r} of {str(path)!r} has shape {shape}; expected an image batch (N, H, W, C)")
    _check_batch(name, shape, batch)
    from tvm.relax.frontend.tflite import from_tflite

    try:
        mod = from_tflite(model, shape_dict={name: shape}, dtype_dict={name: "float32"}, op_converter=_tflite_converter())
    except Exception as exc:
        raise BadInputError(f"TVM cannot import {str(path)!r}: {type(exc).__name__}: {message_line(exc, 0)}") from None
    return ImportedModel(mod, name, shape, "float32", "litert", _litert_reference(model_bytes))


def read_int8_tflite(path: Path, batch: int | None = None):
    """A full-integer ``.tflite`` file as (``QuantizedNetwork``, input name, LiteRT's reference
    for float32 inputs): the input quantized with the file's scale and zero point, the output
    dequantized (compiler/tflite_int8.py)."""
    from tvmc_mobilenet.compiler.tflite_int8 import read_int8_tflite as read

    model, model_bytes = _read_tflite(path)
    net = read(model, path)
    subgraph = model.Subgraphs(0)
    name = subgraph.Tensors(subgraph.Inputs(0)).Name().decode()
    _check_batch(name, net.input_shape, batch)
    return net, name, _litert_reference(model_bytes, net)


def _litert_reference(model_bytes: bytes, quantized=None):
    """LiteRT running the file on a float32 input; for a full-integer file (``quantized``, its
    QuantizedNetwork) the input is quantized as the module does and the output dequantized."""

    def reference(data: np.ndarray) -> np.ndarray:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BadInputError(
                "verifying a TFLite model needs LiteRT, whose output is its reference: pip install 'tvmc-mobilenet[tflite]'"
            ) from None
        interpreter = Interpreter(model_content=model_bytes, num_threads=2)
        interpreter.allocate_tensors()
        given, returned = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        if quantized is not None and given["dtype"] == np.int8:
            data = (quantized.quantize_input(data) + quantized.input_zero_point).astype(np.int8)
        interpreter.set_tensor(given["index"], data)
        interpreter.invoke()
        out = interpreter.get_tensor(returned["index"]).copy()
        if returned["dtype"] == np.int8:
            scale, zero_point = returned["quantization"]
            out = ((out.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)
        return out

    return reference


#: TFLite's TensorType codes (schema.fbs) → NumPy names, for the input check.
_TFLITE_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8", 7: "int16"}
