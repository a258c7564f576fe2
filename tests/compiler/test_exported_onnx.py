"""A TensorFlow user's ONNX file (Keras's MobileNet through tf2onnx) builds to the built-in
network's kernels: its Clip, Mul/Add, Pad, input transpose and 1×1-map classifier are folded
(compiler/frontend.py's Clip/Pad converters, compiler/passes.py's fold_exported_graph), leaving
at most the one transpose before the classifier."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="exporting test models needs tensorflow-cpu (the test extra)")
pytest.importorskip("tf2onnx", reason="exporting test models to ONNX needs tf2onnx (the test extra)")
pytest.importorskip("onnxruntime", reason="verifying ONNX models needs onnxruntime (the onnx extra)")

from tests.compiler.tflite_models import keras_mobilenet_onnx  # noqa: E402
from tvmc_mobilenet.build import BuildConfig, build_model  # noqa: E402
from tvmc_mobilenet.options import ModelOptions  # noqa: E402


def test_a_tf2onnx_export_builds_to_the_builtin_networks_kernels(tmp_path):
    path = keras_mobilenet_onnx(tmp_path / "keras.onnx")
    exported = build_model(BuildConfig(model=ModelOptions(model_file=path), output=tmp_path / "e.tar")).manifest
    builtin = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=64), output=tmp_path / "b.tar")).manifest
    assert exported["verification"]["status"] == "passed" and exported["input"]["layout"] == "NHWC"
    assert exported["layout"]["transforms"] <= 2
    kinds = [k["kind"] for k in exported["kernels"]]
    assert kinds.count("pointwise") == [k["kind"] for k in builtin["kernels"]].count("pointwise")
    assert kinds.count("depthwise") == [k["kind"] for k in builtin["kernels"]].count("depthwise")
    names = " ".join(k["name"] for k in exported["kernels"])
    # every ReLU6 in its convolution's epilogue, every Pad in its padding, the classifier a matrix product
    assert all(re.search(r"_maximum\d*_minimum", k["name"]) for k in exported["kernels"] if k["kind"] in ("conv", "pointwise", "depthwise"))
    assert "pad" not in names and "multiply" not in names and "matmul" in names
    assert exported["verification"]["max_abs_error"] <= 1e-4 * np.max(np.abs(exported_output(tmp_path / "e.tar")))


def exported_output(artifact):
    from tvmc_mobilenet.runtime.artifact import open_artifact

    return open_artifact(artifact).reference_output()
