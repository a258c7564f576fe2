"""Calibration inputs: images and arrays from a folder, the default random samples, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tvmc_mobilenet.compiler.calibration import calibration_inputs
from tvmc_mobilenet.errors import BadInputError


def test_default_samples_come_from_the_reference_distribution():
    data, info = calibration_inputs(None, 32, 5, seed=1)
    assert data.shape == (5, 3, 32, 32) and data.dtype == np.float32
    assert info == {"source": "random", "distribution": "standard normal, as the reference input", "samples": 5, "seed": 1}
    assert np.array_equal(calibration_inputs(None, 32, 5, seed=1)[0], data)


def test_a_folder_of_images_and_arrays(tmp_path):
    Image.new("RGB", (80, 60), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("L", (64, 64), 128).save(tmp_path / "grey.jpg")
    np.save(tmp_path / "two.npy", np.zeros((2, 3, 32, 32), dtype=np.float32))
    (tmp_path / "notes.txt").write_text("ignored")
    data, info = calibration_inputs(tmp_path, 32, 99, seed=0)
    assert data.shape == (4, 3, 32, 32) and info["images"] == 2 and info["files"] == 3 and info["samples"] == 4
    red = data[np.argmax(data[:, 0].mean(axis=(1, 2)))]  # the red image, ImageNet-normalised
    assert np.allclose(red[0], (1 - 0.485) / 0.229) and np.allclose(red[1], -0.456 / 0.224)
    single, _ = calibration_inputs(tmp_path / "two.npy", 32, 99, seed=0)
    assert single.shape == (2, 3, 32, 32)


@pytest.mark.faults("bad_input")
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d, r"holds no images .* or \.npy arrays"),
        (lambda d: d / "missing", r"does not exist"),
        (lambda d: (d / "x.txt").write_text("x") and d / "x.txt", r"neither a folder nor a \.npy file"),
        (
            lambda d: np.save(d / "a.npy", np.zeros((3, 64, 64), np.float32)) or d,
            r"has shape \(1, 3, 64, 64\).*takes float inputs of shape \(3, 32, 32\)",
        ),
        (lambda d: np.save(d / "a.npy", np.zeros((3, 32, 32), np.int64)) or d, r"dtype int64"),
        (lambda d: np.save(d / "a.npy", np.full((3, 32, 32), np.nan, np.float32)) or d, r"NaN"),
        (lambda d: (d / "broken.jpg").write_bytes(b"not a jpeg") and d, r"image .*broken\.jpg' cannot be decoded"),
        (lambda d: (d / "bad.npy").write_bytes(b"junk") and d, r"is not a NumPy \.npy array"),
    ],
)
def test_bad_calibration_input_is_one_clear_error(tmp_path, make, message):
    with pytest.raises(BadInputError, match=message):
        calibration_inputs(make(tmp_path), 32, 4, seed=0)
