"""TFLite and ONNX files for tests, exported as a user would: Keras's MobileNet (random weights)
through TensorFlow's TFLite converter, or through tf2onnx. TensorFlow and tf2onnx are test
dependencies only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def keras_mobilenet_tflite(path: Path, *, alpha: float = 0.25, resolution: int = 64, fixed_batch: bool = True,
                           softmax: bool = False, int8: bool = False, int8_io: bool = True) -> Path:  # fmt: skip
    """Keras ``MobileNet(weights=None)`` as a float (or full-integer ``int8``) ``.tflite`` file.

    ``fixed_batch`` exports with a batch of 1 in the signature; without it the batch is dynamic
    and the converter computes the classifier's Reshape shape in the graph. ``softmax`` keeps
    Keras's final softmax (what downloaded files have); without it the model returns logits.
    ``int8_io=False`` keeps a full-integer model's float interface (a QUANTIZE first and a
    DEQUANTIZE last, the converter's default).
    """
    model = keras_mobilenet(alpha=alpha, resolution=resolution, fixed_batch=fixed_batch, softmax=softmax)
    Path(path).write_bytes(tflite_bytes(model, resolution, int8=int8, int8_io=int8_io))
    return Path(path)


def keras_mobilenet(*, alpha: float, resolution: int, fixed_batch: bool = True, softmax: bool = False):
    """Keras's MobileNet v1 with random weights whose activations keep their size through the
    network, as a trained one's do: each BatchNorm's statistics are those of its input on random
    images (Keras's initial ones, mean 0 and variance 1, let the activations shrink towards 0 layer
    by layer, and an int8 export then quantizes nearly everything to its zero point)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    keras_input = tf.keras.Input(shape=(resolution, resolution, 3), batch_size=1 if fixed_batch else None)
    model = tf.keras.applications.MobileNet(
        input_tensor=keras_input, alpha=alpha, weights=None, classes=1000, classifier_activation="softmax" if softmax else None
    )
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.0  # one training-mode call sets the statistics to the batch's
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32))
            layer.beta.assign(rng.uniform(-0.5, 1.0, layer.beta.shape).astype(np.float32))
    model(rng.uniform(-1, 1, (8, resolution, resolution, 3)).astype(np.float32), training=True)
    return model


def tflite_bytes(model, resolution: int, *, int8: bool = False, int8_io: bool = True) -> bytes:
    """A Keras model through TensorFlow's TFLite converter: float, or full-integer int8
    (``TFLITE_BUILTINS_INT8``, calibrated on random images in [-1, 1])."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, resolution, resolution, 3)).astype(np.float32)] for _ in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def keras_mobilenet_onnx(path: Path, *, alpha: float = 0.25, resolution: int = 64, softmax: bool = True) -> Path:
    """Keras's MobileNet through tf2onnx (opset 17), as a TensorFlow user exports to ONNX: NHWC
    input transposed for the convolutions, ReLU6 as ``Clip``, part of each BatchNorm left as
    ``Mul``/``Add``, an explicit ``Pad`` before each stride-2 depthwise layer, the classifier a
    1×1 ``Conv`` on the pooled 1×1 map."""
    import tensorflow as tf
    import tf2onnx

    model = keras_mobilenet(alpha=alpha, resolution=resolution, softmax=softmax)
    spec = (tf.TensorSpec((1, resolution, resolution, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    Path(path).write_bytes(proto.SerializeToString())
    return Path(path)
