"""Images as the model takes them: resize and centre crop, the three normalisations, both layouts,
and images that cannot be read."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.preprocess import NORMALISATIONS, default_normalisation, image_layout, normalisation, read_image


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("torch", [(200 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225]),
        ("tf", [200 / 127.5 - 1, 100 / 127.5 - 1, -1.0]),
        ("none", [200.0, 100.0, 0.0]),
    ],
)
def test_each_normalisation_of_one_colour(tmp_path, name, expected):
    Image.new("RGB", (50, 40), (200, 100, 0)).save(tmp_path / "c.png")
    nchw = read_image(tmp_path / "c.png", (1, 3, 32, 32), NORMALISATIONS[name])
    assert nchw.shape == (3, 32, 32) and nchw.dtype == np.float32
    assert np.allclose(nchw.reshape(3, -1), np.array(expected, dtype=np.float32)[:, None], atol=1e-5)
    nhwc = read_image(tmp_path / "c.png", (1, 32, 32, 3), NORMALISATIONS[name])
    assert nhwc.shape == (32, 32, 3) and np.array_equal(nhwc, np.transpose(nchw, (1, 2, 0)))


def test_the_shorter_side_is_resized_and_the_centre_cropped(tmp_path):
    """A white 300×200 picture in a 10-pixel black frame: 200 → round(96 / 0.875) = 110, so the
    96×96 crop lies inside the frame; a picture smaller than the input is scaled up first."""
    frame = Image.new("RGB", (300, 200), (0, 0, 0))
    frame.paste((255, 255, 255), (10, 10, 290, 190))
    frame.save(tmp_path / "frame.png")
    pixels = read_image(tmp_path / "frame.png", (1, 96, 96, 3), NORMALISATIONS["none"])
    assert pixels.shape == (96, 96, 3) and pixels.min() > 250
    whole = np.asarray(frame.resize((96, 64), Image.BILINEAR), dtype=np.float32)
    assert whole.min() < 5  # without the crop the frame would show
    Image.new("RGB", (20, 10), (9, 9, 9)).save(tmp_path / "small.png")
    assert read_image(tmp_path / "small.png", (1, 3, 64, 64), NORMALISATIONS["none"]).shape == (3, 64, 64)


def test_grey_and_transparent_images_become_rgb(tmp_path):
    Image.new("L", (40, 40), 60).save(tmp_path / "grey.jpg")
    Image.new("RGBA", (40, 40), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    assert np.allclose(read_image(tmp_path / "grey.jpg", (1, 3, 16, 16), NORMALISATIONS["none"]), 60, atol=1)
    assert read_image(tmp_path / "alpha.png", (1, 3, 16, 16), NORMALISATIONS["none"])[:, 0, 0].tolist() == [10, 20, 30]


def test_defaults_follow_the_model_source_and_layout():
    assert default_normalisation("builtin", (1, 3, 224, 224)).name == "torch"
    assert default_normalisation("onnx", (1, 3, 224, 224)).name == "torch"
    assert default_normalisation("onnx", (1, 224, 224, 3)).name == "tf"  # a TensorFlow/Keras export
    assert default_normalisation("tflite", (1, 3, 224, 224)).name == "tf"
    assert image_layout((1, 3, 8, 8)) == "NCHW" and image_layout((2, 8, 8, 3)) == "NHWC" and image_layout((1, 1, 28, 28)) is None


@pytest.mark.faults("bad_input")
def test_unreadable_images_and_unknown_names(tmp_path):
    (tmp_path / "text.jpg").write_text("not a picture")
    with pytest.raises(BadInputError, match=r"image '.*text\.jpg' cannot be decoded \(UnidentifiedImageError"):
        read_image(tmp_path / "text.jpg", (1, 3, 16, 16), NORMALISATIONS["torch"])
    with pytest.raises(BadInputError, match=r"image '.*missing\.png' does not exist"):
        read_image(tmp_path / "missing.png", (1, 3, 16, 16), NORMALISATIONS["torch"])
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    with pytest.raises(BadInputError, match=r"input has shape \(1, 1, 28, 28\); images need an RGB input"):
        read_image(tmp_path / "ok.png", (1, 1, 28, 28), NORMALISATIONS["torch"])
    with pytest.raises(BadInputError, match="--preprocess must be one of torch, tf, none, got 'caffe'"):
        normalisation("caffe")
