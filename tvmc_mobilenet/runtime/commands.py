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

from tvmc_mobilenet.errors import ArtifactError
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
    #: Where to save the logits (.npy), if anywhere.
    output_file: Path | None = None
    #: How many classes to report per image.
    top: int = 5
    rpc: RpcOptions = field(default_factory=RpcOptions)


@dataclass(frozen=True)
class RunResult:
    #: Per image, the ``top`` most probable (class, probability) pairs.
    classes: list[list[tuple[int, float]]]
    #: The output against the stored reference (when the reference input was run).
    comparison: Comparison | None
    output_file: Path | None


def run_artifact(config: RunConfig) -> RunResult:
    """Run the artifact once; raises VerificationError if the reference input's output is off."""
    loaded = load_artifact(config.artifact, config.rpc)
    data = load_input(config.input_file) if config.input_file else loaded.artifact.reference_input()
    logits = loaded.model.run(data)
    comparison = check_against_reference(logits, loaded.artifact) if config.input_file is None else None
    if config.output_file:
        save_array(config.output_file, np.asarray(logits))
    return RunResult(top_classes(logits, config.top), comparison, config.output_file)


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
