"""Published ImageNet top-1 accuracy of MobileNet v1 over the α × resolution grid, with its source.

The paper (Howard et al., 2017) gives Table 6 (α at 224 px) and Table 7 (resolution at α = 1);
the other points of the grid come from the TF-slim release of the trained models
(tensorflow/models, research/slim/nets/mobilenet_v1.md). Where both give a number, the paper's
is used. These are accuracies of the published trained weights, not of anything built here.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "paper (Howard et al. 2017, Tables 6 and 7)"
TF_SLIM = "TF-slim release (tensorflow/models research/slim/nets/mobilenet_v1.md)"

#: (α, resolution) → top-1 % from the paper.
_PAPER_TOP1 = {
    (1.0, 224): 70.6,
    (0.75, 224): 68.4,
    (0.5, 224): 63.7,
    (0.25, 224): 50.6,
    (1.0, 192): 69.1,
    (1.0, 160): 67.2,
    (1.0, 128): 64.4,
}

#: (α, resolution) → top-1 % of the TF-slim checkpoints.
_TF_SLIM_TOP1 = {
    (1.0, 224): 70.9,
    (1.0, 192): 70.0,
    (1.0, 160): 68.0,
    (1.0, 128): 65.2,
    (0.75, 224): 68.4,
    (0.75, 192): 67.2,
    (0.75, 160): 65.3,
    (0.75, 128): 62.1,
    (0.5, 224): 63.3,
    (0.5, 192): 61.7,
    (0.5, 160): 59.1,
    (0.5, 128): 56.3,
    (0.25, 224): 49.8,
    (0.25, 192): 47.7,
    (0.25, 160): 45.5,
    (0.25, 128): 41.5,
}


@dataclass(frozen=True)
class PublishedAccuracy:
    top1: float
    source: str


def published_top1(alpha: float, resolution: int) -> PublishedAccuracy | None:
    """The published top-1 accuracy of MobileNet v1 (α, resolution), or None off the grid."""
    key = (round(float(alpha), 4), int(resolution))
    if key in _PAPER_TOP1:
        return PublishedAccuracy(_PAPER_TOP1[key], PAPER)
    if key in _TF_SLIM_TOP1:
        return PublishedAccuracy(_TF_SLIM_TOP1[key], TF_SLIM)
    return None
