"""Calibration inputs for post-training quantization: a user's images or arrays, or samples of the
reference input distribution.

``--calibration PATH`` is a folder of images (JPEG, PNG, BMP, WebP) and/or ``.npy`` arrays, or a
single ``.npy`` file. Images are preprocessed as the model expects (model/preprocess.py: the
shorter side resized to resolution / 0.875, a centre crop, then the build's normalisation, the
ImageNet mean and standard deviation by default); arrays are taken as they are, ``(3, R, R)`` or
``(N, 3, R, R)`` float. Without ``--calibration`` the quantizer sees
:data:`~tvmc_mobilenet.options.DEFAULT_CALIBRATION_SAMPLES` draws of the reference
input distribution (standard normal, as the build's reference input), and the manifest says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.preprocess import CROP_FRACTION, IMAGE_SUFFIXES, NORMALISATIONS, Normalisation, read_image
#: The most calibration inputs read (the rest of a larger folder is not used).
MAX_SAMPLES = 1000


def calibration_inputs(
    path: Path | None, resolution: int, samples: int, seed: int, norm: Normalisation = NORMALISATIONS["torch"]
) -> tuple[np.ndarray, dict[str, Any]]:
    """(inputs as float32 NCHW, what the manifest records about them); images are normalised with ``norm``."""
    if path is None:
        data = np.random.default_rng(seed).standard_normal((samples, 3, resolution, resolution), dtype=np.float32)
        return data, {"source": "random", "distribution": "standard normal, as the reference input", "samples": samples, "seed": seed}
    path = Path(path)
    if path.is_file() and path.suffix == ".npy":
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, ".npy"))
        if not files:
            raise BadInputError(
                f"calibration folder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}) or .npy arrays; "
                "give a folder of representative inputs, or leave --calibration out"
            )
    elif path.exists():
        raise BadInputError(f"--calibration {str(path)!r} is neither a folder nor a .npy file")
    else:
        raise BadInputError(f"--calibration {str(path)!r} does not exist")
    arrays = []
    count = 0
    for file in files:
        if file.suffix == ".npy":
            batch = _read_array(file, resolution)
        else:
            batch = read_image(file, (1, 3, resolution, resolution), norm, what="calibration image")[None]
        arrays.append(batch)
        count += len(batch)
        if count >= MAX_SAMPLES:
            break
    data = np.concatenate(arrays)[:MAX_SAMPLES]
    images = sum(1 for f in files if f.suffix.lower() in IMAGE_SUFFIXES)
    info = {"source": str(path), "samples": int(len(data)), "files": len(files), "images": images}
    if images:
        info["preprocessing"] = f"resize to {round(resolution / CROP_FRACTION)}, centre crop {resolution}, {norm.description}"
    return data, info


def _read_array(file: Path, resolution: int) -> np.ndarray:
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInputError(f"calibration file {str(file)!r} is not a NumPy .npy array ({exc})") from None
    if array.ndim == 3:
        array = array[None]
    expected = (3, resolution, resolution)
    if array.ndim != 4 or tuple(array.shape[1:]) != expected or not np.issubdtype(array.dtype, np.floating):
        raise BadInputError(
            f"calibration array {str(file)!r} has shape {tuple(array.shape)} and dtype {array.dtype}; the model takes "
            f"float inputs of shape {expected} (or a stack of them, N×{expected})"
        )
    if not np.all(np.isfinite(array)):
        raise BadInputError(f"calibration array {str(file)!r} holds NaN or infinite values")
    return array.astype(np.float32)
