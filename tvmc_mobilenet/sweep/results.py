"""What a sweep is and what it produces: its config, the models it built, their measured rows,
and the names of the files it writes (``run.py`` fills them, ``report.py`` writes them)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.spec import validate_alpha, validate_resolution
from tvmc_mobilenet.options import ModelOptions, RpcOptions, TargetOptions, TimingOptions, group_from_json

RESULTS_JSON = "sweep.json"
BUILT_JSON = "built.json"
RESULTS_CSV = "sweep.csv"
TUNING_DIR = "tuning"
ARTIFACTS_DIR = "artifacts"

DEFAULT_ALPHAS = (1.0, 0.75, 0.5, 0.25)
DEFAULT_RESOLUTIONS = (224, 192, 160, 128)


@dataclass(frozen=True)
class SweepConfig:
    target: TargetOptions = field(default_factory=TargetOptions)
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS
    #: Tuning trials per model (0: untuned builds with our default schedules).
    trials_per_model: int = 0
    out: Path = Path("sweep")
    #: The device to measure on (none: this machine); tuning uses its tracker and key.
    rpc: RpcOptions = field(default_factory=RpcOptions)
    #: Each model's timing in each of ``rounds`` rounds over the grid.
    timing: TimingOptions = field(default_factory=lambda: TimingOptions(repeat=10, number=5, warmup=3))
    rounds: int = 3
    #: Seed of the random weights and reference inputs.
    seed: int = 0
    #: ``int8``: every model quantized (``build --quantize``), calibrated on the default samples.
    quantize: str | None = None
    #: Tune on an emulated board all the same (see ``TuneConfig.allow_emulated``).
    allow_emulated: bool = False

    def __post_init__(self) -> None:
        if not self.alphas or not self.resolutions:
            raise BadInputError("a sweep needs at least one α and one resolution")
        for alpha in self.alphas:
            validate_alpha(alpha)
        for resolution in self.resolutions:
            validate_resolution(resolution)
        if not isinstance(self.trials_per_model, int) or self.trials_per_model < 0:
            raise BadInputError(f"--trials-per-model must be 0 (untuned) or a positive integer, got {self.trials_per_model!r}")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise BadInputError(f"--rounds must be a positive integer, got {self.rounds!r}")
        ModelOptions(quantize=self.quantize)  # checks the scheme

    @property
    def grid(self) -> list[tuple[float, int]]:
        """The models in sweep order: widest first, then by resolution, largest first."""
        return [(float(a), int(r)) for a in sorted(set(self.alphas), reverse=True) for r in sorted(set(self.resolutions), reverse=True)]

    def identity(self) -> dict[str, Any]:
        """What must match for an earlier sweep's builds to be reused on resume."""
        t = self.target
        identity = {"target": t.name, "cuda_arch": t.cuda_arch, "trials_per_model": self.trials_per_model, "seed": self.seed}
        identity |= {"cuda_compiler": t.cuda_compiler} if t.cuda_compiler else {}
        return identity | ({"quantize": self.quantize} if self.quantize else {})

    def to_json(self) -> dict[str, Any]:
        return {
            **self.target.to_json(),
            "alphas": list(self.alphas),
            "resolutions": list(self.resolutions),
            "trials_per_model": self.trials_per_model,
            "out": str(self.out),
            **self.rpc.to_json(),
            **self.timing.to_json(),
            "rounds": self.rounds,
            "seed": self.seed,
            "quantize": self.quantize,
            "allow_emulated": self.allow_emulated,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> SweepConfig:
        return cls(
            target=group_from_json(TargetOptions, payload),
            alphas=tuple(payload["alphas"]),
            resolutions=tuple(payload["resolutions"]),
            trials_per_model=payload["trials_per_model"],
            out=Path(payload["out"]),
            rpc=group_from_json(RpcOptions, payload),
            timing=group_from_json(TimingOptions, payload),
            rounds=payload.get("rounds", 1),
            seed=payload.get("seed", 0),
            quantize=payload.get("quantize"),
            allow_emulated=payload.get("allow_emulated", False),
        )


@dataclass
class BuiltModel:
    """One model of the grid, built (and tuned) for the target: the sweep's resume state."""

    alpha: float
    resolution: int
    name: str
    mult_adds: int
    params: int
    top1: float | None
    top1_source: str | None
    trials_run: int
    trials_reused: int
    tuning_seconds: float
    build_seconds: float
    kernels_tuned: int
    kernels_total: int
    artifact: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> BuiltModel:
        return cls(**{f.name: payload[f.name] for f in fields(cls)})


@dataclass
class SweepRow(BuiltModel):
    """One model of the grid, measured on the target (its fastest round)."""

    latency_median_ms: float
    latency_p90_ms: float
    throughput_per_s: float
    gflops: float
    verification: str
    #: The median of every round, in round order: how much the machine's load moved the figures.
    latency_rounds_ms: list[float] = field(default_factory=list)


@dataclass
class SweepProgress:
    index: int
    total: int
    name: str
    stage: str


@dataclass
class SweepResult:
    config: SweepConfig
    rows: list[SweepRow]
    resumed: int
    seconds: float
    transfer: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": "tvmc-mobilenet sweep",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": self.config.to_json(),
            "identity": self.config.identity(),
            "rows": [row.to_json() for row in self.rows],
            "resumed_models": self.resumed,
            "seconds": round(self.seconds, 1),
            "transfer": self.transfer,
        }


def load_result(path: Path) -> SweepResult:
    """A ``sweep.json`` read back (e.g. to redraw its plots with ``write_results``)."""
    payload = json.loads(Path(path).read_text())
    config = SweepConfig.from_json(payload["config"])
    rows = [SweepRow(**row) for row in payload["rows"]]
    return SweepResult(config, rows, payload.get("resumed_models", 0), payload.get("seconds", 0.0), payload.get("transfer", {}))


def parse_list(text: str, kind: type, option: str) -> tuple:
    """``"1,0.75"`` → ``(1.0, 0.75)``; a one-line error naming the option for anything else."""
    values = []
    for item in text.split(","):
        try:
            values.append(kind(item.strip()))
        except ValueError:
            expected = "a number" if kind is float else "an integer"
            raise BadInputError(f"{option}: {item.strip()!r} is not {expected} (expected a comma-separated list)") from None
    return tuple(values)
