"""Images as a model takes them: decoded (Pillow), resized and centre-cropped to its input, then
normalised the way it was trained.

The normalisations (``build --preprocess``, recorded in the manifest; ``run --preprocess``
overrides it):

- ``torch``: x/255, less the ImageNet mean, over its standard deviation (torchvision's models and
  the built-in network);
- ``tf``: (x − 127.5)/127.5, i.e. [-1, 1] (TensorFlow's and Keras's MobileNets);
- ``none``: the pixel values 0–255 as they are.

The geometry is torchvision's evaluation transform for every normalisation: the shorter side
resized (bilinear) to the input size / 0.875 (256 for 224), then the centre cropped to the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvmc_mobilenet.errors import BadInputError

if TYPE_CHECKING:  # NumPy and Pillow are imported where used: the CLI imports this module for --help
    import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: torchvision's evaluation crop: resize to size / 0.875 (256 for 224), crop the centre.
CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Normalisation:
    """``(pixel − mean) / std`` per RGB channel, on pixel values 0–255."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """(…, 3) pixel values 0–255 → float32."""
        import numpy as np

        return ((pixels.astype(np.float32) - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mean": list(self.mean),
            "std": list(self.std),
            "description": self.description,
            "geometry": f"shorter side resized to input / {CROP_FRACTION}, centre crop",
        }


NORMALISATIONS = {
    "torch": Normalisation(
        "torch", (0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255), "ImageNet mean/std (torchvision)"
    ),
    "tf": Normalisation("tf", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5), "(x - 127.5) / 127.5, TensorFlow/Keras"),
    "none": Normalisation("none", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "raw pixel values 0-255"),
}


def normalisation(name: str) -> Normalisation:
    try:
        return NORMALISATIONS[name]
    except KeyError:
        raise BadInputError(f"--preprocess must be one of {', '.join(NORMALISATIONS)}, got {name!r}") from None


def image_layout(input_shape: tuple[int, ...]) -> str | None:
    """``NCHW`` or ``NHWC``: where an image input of ``input_shape`` keeps its 3 colour channels
    (None: the input is no RGB image batch)."""
    shape = tuple(input_shape)
    if len(shape) == 4 and shape[1] == 3:
        return "NCHW"
    if len(shape) == 4 and shape[3] == 3:
        return "NHWC"
    return None


def default_normalisation(source: str, input_shape: tuple[int, ...]) -> Normalisation:
    """What a model expects unless told: ``tf`` for TensorFlow's formats and NHWC inputs (a
    TensorFlow or Keras export), ``torch`` for the built-in network, state_dicts and NCHW ONNX."""
    return NORMALISATIONS["tf" if source == "tflite" or image_layout(input_shape) == "NHWC" else "torch"]


def read_image(path: Path, input_shape: tuple[int, ...], norm: Normalisation, what: str = "image") -> np.ndarray:
    """One image as one batch entry of ``input_shape`` (its layout's (3, H, W) or (H, W, 3)), float32."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} {str(path)!r} does not exist")
    layout = image_layout(input_shape)
    if layout is None:
        raise BadInputError(f"the model's input has shape {tuple(input_shape)}; images need an RGB input, (N, 3, H, W) or (N, H, W, 3)")
    height, width = (input_shape[2], input_shape[3]) if layout == "NCHW" else (input_shape[1], input_shape[2])
    try:
        with Image.open(path) as image:
            pixels = _resize_and_crop(image.convert("RGB"), height, width)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInputError(f"{what} {str(path)!r} cannot be decoded ({type(exc).__name__}: {exc})") from None
    normalised = norm.apply(pixels)
    return np.ascontiguousarray(np.transpose(normalised, (2, 0, 1))) if layout == "NCHW" else normalised


def _resize_and_crop(image, height: int, width: int) -> np.ndarray:
    import numpy as np
    from PIL import Image

    scale = round(max(height, width) / CROP_FRACTION) / min(image.size)
    resized = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(resized, Image.BILINEAR)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32)
