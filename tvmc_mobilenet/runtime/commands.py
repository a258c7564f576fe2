"""The work of ``run`` and ``bench``: open an artifact, load it here or on a remote device, run it
once or time it, and check it against its stored reference.

:func:`run_artifact` and :func:`bench_artifact` take one frozen config each and return typed
results that the CLI prints; :func:`load_artifact` is the loading step both share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvmc_mobilenet.errors import ArtifactError, BadInputError
from tvmc_mobilenet.model.labels import default_labels, read_labels
from tvmc_mobilenet.model.preprocess import normalisation, read_image
from tvmc_mobilenet.files import write_json
from tvmc_mobilenet.options import RpcOptions, TimingOptions
from tvmc_mobilenet.runtime.artifact import Artifact, open_artifact
from tvmc_mobilenet.runtime.executor import (
    Comparison,
    KernelTime,
    LoadedModel,
    TimingStats,
    check_against_reference,
    load_local,
    load_remote,
    verify_on_reference,
)
from tvmc_mobilenet.runtime.results import bench_report, load_input, save_array, top_classes
from tvmc_mobilenet.runtime.rpc import RpcTarget


@dataclass
class LoadedArtifact:
    """An artifact and its model, loaded where the RPC options say ("local" or a remote device)."""

    artifact: Artifact
    model: LoadedModel
    where: str


def load(artifact: Artifact, rpc: RpcTarget | None) -> LoadedModel:
    """The artifact's model on this machine (``rpc`` None) or on the remote device."""
    return load_local(artifact) if rpc is None else load_remote(artifact, rpc)


def load_artifact(path: Path, rpc: RpcOptions | None = None) -> LoadedArtifact:
    """Open the artifact at ``path`` and load it locally, or on the remote device ``rpc`` names."""
    target = RpcTarget.from_options(rpc or RpcOptions())
    artifact = open_artifact(path)
    return LoadedArtifact(artifact, load(artifact, target), "local" if target is None else target.describe())


@dataclass(frozen=True)
class RunConfig:
    artifact: Path
    #: Input tensor (.npy); None: the artifact's reference input, whose output is then checked.
    input_file: Path | None = None
    #: Images (JPEG, PNG…) to classify instead of ``input_file``: resized, cropped and normalised
    #: as the model expects (model/preprocess.py).
    images: tuple[Path, ...] = ()
    #: The images' normalisation (``torch``, ``tf``, ``none``); None: the one the manifest records.
    preprocess: str | None = None
    #: Class names, one a line; None: ImageNet's for 1000 or 1001 outputs, else class numbers only.
    labels: Path | None = None
    #: Where to save the logits (.npy), if anywhere.
    output_file: Path | None = None
    #: How many classes to report per image.
    top: int = 5
    rpc: RpcOptions = field(default_factory=RpcOptions)

    def __post_init__(self) -> None:
        if self.images and self.input_file is not None:
            raise BadInputError("give either --input (a .npy tensor) or --image files, not both")
        if self.preprocess is not None:
            if not self.images:
                raise BadInputError("--preprocess says how --image files are normalised; it needs --image")
            normalisation(self.preprocess)


@dataclass(frozen=True)
class Prediction:
    """One class of an image's top list."""

    index: int
    probability: float
    name: str | None  # None: the model's classes have no names


@dataclass(frozen=True)
class RunResult:
    #: Per image, the ``top`` most probable classes.
    classes: list[list[Prediction]]
    #: What each row of ``classes`` is: the image's file name, or "image N" of a tensor batch.
    sources: list[str]
    #: The output against the stored reference (when the reference input was run).
    comparison: Comparison | None
    output_file: Path | None
    #: The normalisation the images were given (None without images).
    normalisation: str | None = None


def run_artifact(config: RunConfig) -> RunResult:
    """Run the artifact once (once per batch of images); raises VerificationError if the
    reference input's output is off."""
    artifact = open_artifact(config.artifact)
    names = read_labels(config.labels, artifact.num_classes) if config.labels else default_labels(artifact.num_classes)
    norm = normalisation(config.preprocess) if config.preprocess else artifact.normalisation
    batches = image_batches(config.images, artifact.input_shape, norm) if config.images else None
    data = None if batches else load_input(config.input_file) if config.input_file else artifact.reference_input()
    target = RpcTarget.from_options(config.rpc)
    model = load(artifact, target)
    comparison = None
    if batches:
        logits = np.concatenate([model.run(batch) for batch in batches])[: len(config.images)]
        sources = [Path(p).name for p in config.images]
    else:
        logits = model.run(data)
        comparison = check_against_reference(logits, artifact) if config.input_file is None else None
        sources = [f"image {i}" for i in range(len(logits))]
    if config.output_file:
        save_array(config.output_file, np.asarray(logits))
    classes = [[Prediction(i, p, names[i] if names else None) for i, p in row] for row in top_classes(logits, config.top)]
    return RunResult(classes, sources, comparison, config.output_file, norm.name if batches else None)


def image_batches(images: tuple[Path, ...], input_shape: tuple[int, ...], norm) -> list[np.ndarray]:
    """The images as input batches of the model's batch size (the last one filled up with
    repeats of its last image, whose outputs are dropped)."""
    entries = [read_image(path, input_shape, norm) for path in images]
    size = input_shape[0]
    batches = []
    for start in range(0, len(entries), size):
        chunk = entries[start : start + size]
        chunk += [chunk[-1]] * (size - len(chunk))
        batches.append(np.stack(chunk).astype(np.float32))
    return batches


@dataclass(frozen=True)
class BenchConfig:
    artifact: Path
    timing: TimingOptions = field(default_factory=TimingOptions)
    rpc: RpcOptions = field(default_factory=RpcOptions)
    #: Also time each kernel alone (local artifacts only).
    profile: bool = False
    #: Where to write the report as JSON, if anywhere.
    json_file: Path | None = None


@dataclass(frozen=True)
class BenchResult:
    model_name: str
    target_name: str
    where: str
    batch: int
    stats: TimingStats
    comparison: Comparison
    #: Per-kernel times, slowest first (with ``profile``).
    profile: list[KernelTime] | None
    #: What ``--json`` writes.
    report: dict[str, Any]

    @property
    def images_per_second(self) -> float:
        return 1000.0 * self.batch / self.stats.median_ms


def bench_artifact(config: BenchConfig) -> BenchResult:
    """Check the device's output for the stored reference input, then time it (and profile it)."""
    loaded = load_artifact(config.artifact, config.rpc)
    artifact, model = loaded.artifact, loaded.model
    kernels = artifact.manifest.get("kernels")
    if config.profile and not kernels:
        raise ArtifactError(f"artifact {str(config.artifact)!r} has no kernel table (built by an older version); rebuild it to profile")
    comparison = verify_on_reference(model, artifact)
    t = config.timing
    stats = model.time(artifact.reference_input(), number=t.number, repeat=t.repeat, warmup=t.warmup)
    report = bench_report(artifact, stats, comparison, where=loaded.where)
    rows = None
    if config.profile:
        rows = model.profile(kernels)
        report["profile"] = [r.to_json() for r in rows]
    if config.json_file:
        write_json(config.json_file, report)
    name = artifact.manifest["model"].get("name", artifact.path.stem)
    return BenchResult(name, artifact.target_name, loaded.where, artifact.input_shape[0], stats, comparison, rows, report)
