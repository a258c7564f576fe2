"""Inputs and results as files: .npy tensors in, top classes and JSON reports out (atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.files import atomic_write
from tvmc_mobilenet.runtime.arrays import aligned
from tvmc_mobilenet.runtime.artifact import Artifact, npy_bytes
from tvmc_mobilenet.runtime.executor import Comparison, TimingStats


def save_array(path: Path, array: np.ndarray) -> None:
    atomic_write(path, npy_bytes(array))


def load_input(path: Path) -> np.ndarray:
    """A .npy tensor (no pickled objects), placed where the runtime reads it in place; its shape
    and dtype are checked by the model."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"input file {str(path)!r} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInputError(f"input file {str(path)!r} is not a NumPy .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise BadInputError(f"input file {str(path)!r} holds several arrays; give a single .npy array")
    return aligned(array)


def top_classes(logits: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per image, the ``k`` most probable classes with their probabilities: the softmax of the
    logits, or the outputs themselves where a model ends in its own softmax (every row
    non-negative and summing to 1, as Keras's and many ``.tflite`` models do)."""
    logits = np.asarray(logits, dtype=np.float64).reshape(logits.shape[0], -1)
    if np.all(logits >= 0) and np.allclose(logits.sum(axis=1), 1.0, atol=1e-3):
        probs = logits
    else:
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
    out = []
    for row in probs:
        idx = np.argsort(-row, kind="stable")[:k]
        out.append([(int(i), float(row[i])) for i in idx])
    return out


def bench_report(artifact: Artifact, stats: TimingStats, comparison: Comparison, where: str) -> dict[str, Any]:
    batch = artifact.input_shape[0]
    return {
        "artifact": str(artifact.path),
        "model": artifact.manifest["model"],
        "target": artifact.manifest["target"]["name"],
        "where": where,
        "batch": batch,
        "latency": stats.to_json(),
        "throughput_images_per_s": 1000.0 * batch / stats.median_ms,
        "output_check": comparison.to_json(),
        "library_sha256": artifact.manifest["library"]["sha256"],
    }
