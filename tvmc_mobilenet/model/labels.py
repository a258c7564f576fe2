"""Class names for a model's outputs: ImageNet's, shipped with the package, or a user's file.

``imagenet_classes.txt`` holds the 1000 ImageNet-1k class names in the standard (sorted WordNet
id) order, as torchvision lists them (``torchvision/models/_meta.py``, BSD-3-Clause). TensorFlow's
models (TF-slim, many ``.tflite`` files) have 1001 outputs: a "background" class first, then the
same 1000.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tvmc_mobilenet.errors import BadInputError

IMAGENET_CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")
#: The first of TensorFlow's 1001 outputs.
BACKGROUND = "background"


@cache
def imagenet_classes() -> tuple[str, ...]:
    names = tuple(line for line in IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines() if line)
    assert len(names) == 1000, f"{IMAGENET_CLASSES_FILE} holds {len(names)} names"
    return names


def default_labels(classes: int) -> tuple[str, ...] | None:
    """ImageNet's names for a model with ``classes`` outputs: 1000, or 1001 with TensorFlow's
    background class first; None for any other count."""
    if classes == 1000:
        return imagenet_classes()
    if classes == 1001:
        return (BACKGROUND, *imagenet_classes())
    return None


def read_labels(path: Path, classes: int) -> tuple[str, ...]:
    """A labels file, one name a line (blank lines at the end ignored), for ``classes`` outputs."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"labels file {str(path)!r} does not exist")
    try:
        names = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BadInputError(f"labels file {str(path)!r} is not UTF-8 text (one class name a line)") from None
    while names and not names[-1].strip():
        names.pop()
    if len(names) != classes:
        raise BadInputError(f"labels file {str(path)!r} has {len(names)} names, but the model has {classes} outputs")
    return tuple(names)
