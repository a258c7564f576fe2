"""TFLite files for tests, exported as a user would: Keras's MobileNet (random weights) through
TensorFlow's TFLite converter. TensorFlow is a test dependency only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def keras_mobilenet_tflite(path: Path, *, alpha: float = 0.25, resolution: int = 64, fixed_batch: bool = True,
                           softmax: bool = False, int8: bool = False) -> Path:  # fmt: skip
    """Keras ``MobileNet(weights=None)`` as a float (or full-integer ``int8``) ``.tflite`` file.

    ``fixed_batch`` exports with a batch of 1 in the signature; without it the batch is dynamic
    and the converter computes the classifier's Reshape shape in the graph. ``softmax`` keeps
    Keras's final softmax (what downloaded files have); without it the model returns logits.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    keras_input = tf.keras.Input(shape=(resolution, resolution, 3), batch_size=1 if fixed_batch else None)
    model = tf.keras.applications.MobileNet(
        input_tensor=keras_input, alpha=alpha, weights=None, classes=1000, classifier_activation="softmax" if softmax else None
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, resolution, resolution, 3)).astype(np.float32)] for _ in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    Path(path).write_bytes(converter.convert())
    return Path(path)
