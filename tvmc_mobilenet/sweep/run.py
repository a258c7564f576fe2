"""The α × resolution sweep: build (and optionally tune) every model of a grid, then measure them
all on the target, and keep the results as files.

Two phases:

1. **Build**, model by model: tune (with a trial budget), build, record the model in
   ``OUT/built.json``. An interrupted sweep resumes here: models already built with the same
   settings are kept. Tuning shares one MetaSchedule database across the grid (``OUT/tuning``):
   a kernel shape that recurs in several models is tuned once, and a later model's budget counts
   the records an earlier one left (``tune``'s budget is "trials for this model's tasks, counting
   those already there").
2. **Measure**, in interleaved rounds: the first round checks every model's output on the
   target, every round times every model once, and each model's row takes its fastest round.
   On a shared machine (this project's CI hosts, a board running other work) other load comes
   and goes in phases that can outlast a round and only ever adds time; measuring one model right after
   another in a single pass puts whole models in a slow phase, which bends the trade-off curves.
   Every run of the sweep measures all its models again, so the figures it reports always come
   from one run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.accuracy import published_top1
from tvmc_mobilenet.model.spec import ModelConfig, validate_alpha, validate_resolution
from tvmc_mobilenet.targets.toolchain import parse_cuda_compiler

RESULTS_JSON = "sweep.json"
BUILT_JSON = "built.json"
RESULTS_CSV = "sweep.csv"
TUNING_DIR = "tuning"
ARTIFACTS_DIR = "artifacts"

DEFAULT_ALPHAS = (1.0, 0.75, 0.5, 0.25)
DEFAULT_RESOLUTIONS = (224, 192, 160, 128)


@dataclass(frozen=True)
class SweepConfig:
    target: str = "host"
    cuda_arch: str | None = None
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS
    #: Tuning trials per model (0: untuned builds with our default schedules).
    trials_per_model: int = 0
    out: Path = Path("sweep")
    rpc_tracker: str | None = None
    rpc_key: str | None = None
    rpc_host: str | None = None
    rpc_port: int | None = None
    rpc_timeout: float = 600.0
    #: Timing: ``repeat`` samples of ``number`` runs each, after ``warmup`` runs, in each of
    #: ``rounds`` rounds over the grid.
    repeat: int = 10
    number: int = 5
    warmup: int = 3
    rounds: int = 3
    seed: int = 0
    #: What compiles a CUDA target's kernels (``nvcc``/``nvrtc``), as ``build --cuda-compiler``.
    cuda_compiler: str | None = None

    def __post_init__(self) -> None:
        if not self.alphas or not self.resolutions:
            raise BadInputError("a sweep needs at least one α and one resolution")
        for alpha in self.alphas:
            validate_alpha(alpha)
        for resolution in self.resolutions:
            validate_resolution(resolution)
        if not isinstance(self.trials_per_model, int) or self.trials_per_model < 0:
            raise BadInputError(f"--trials-per-model must be 0 (untuned) or a positive integer, got {self.trials_per_model!r}")
        if self.repeat < 1 or self.number < 1 or self.warmup < 0:
            raise BadInputError(f"timing needs repeat ≥ 1, number ≥ 1, warmup ≥ 0 (got {self.repeat}, {self.number}, {self.warmup})")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise BadInputError(f"--rounds must be a positive integer, got {self.rounds!r}")
        parse_cuda_compiler(self.cuda_compiler)

    @property
    def grid(self) -> list[tuple[float, int]]:
        """The models in sweep order: widest first, then by resolution, largest first."""
        return [(float(a), int(r)) for a in sorted(set(self.alphas), reverse=True) for r in sorted(set(self.resolutions), reverse=True)]

    def identity(self) -> dict[str, Any]:
        """What must match for an earlier sweep's builds to be reused on resume."""
        identity = {"target": self.target, "cuda_arch": self.cuda_arch, "trials_per_model": self.trials_per_model, "seed": self.seed}
        return identity | ({"cuda_compiler": self.cuda_compiler} if self.cuda_compiler else {})

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


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
    settings = dict(payload["config"])
    settings.update(alphas=tuple(settings["alphas"]), resolutions=tuple(settings["resolutions"]), out=Path(settings["out"]))
    rows = [SweepRow(**row) for row in payload["rows"]]
    settings.setdefault("rounds", 1)  # written before rounds existed
    config = SweepConfig(**settings)
    return SweepResult(config, rows, payload.get("resumed_models", 0), payload.get("seconds", 0.0), payload.get("transfer", {}))


def run_sweep(
    config: SweepConfig,
    log: Callable[[str], None] = lambda _m: None,
    on_progress: Callable[[SweepProgress], None] = lambda _p: None,
) -> SweepResult:
    """Build (tune) every model of the grid, then measure them all in interleaved rounds."""
    from tvmc_mobilenet.runtime.rpc import RpcTarget
    from tvmc_mobilenet.sweep.report import write_results
    from tvmc_mobilenet.targets.registry import require_buildable, resolve_target

    started = time.time()
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {str(out)!r} is a file; give a directory for the sweep's results")
    target = resolve_target(config.target, config.cuda_arch)
    require_buildable(target, parse_cuda_compiler(config.cuda_compiler))
    rpc = RpcTarget.from_options(config.rpc_tracker, config.rpc_key, config.rpc_host, config.rpc_port, call_timeout=config.rpc_timeout)
    if rpc is None and not target.runs_here:
        raise BadInputError(
            f"{target.name} models do not run on this machine: give --rpc-tracker HOST[:PORT] --rpc-key KEY "
            "(or --rpc-host/--rpc-port) of the device to measure them on"
        )
    out.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_builds(out, config, log)
    built: list[BuiltModel] = []
    transfer = _Transfer()
    grid = config.grid
    for index, (alpha, resolution) in enumerate(grid):
        name = _model_name(alpha, resolution)
        if (alpha, resolution) in earlier:
            built.append(earlier[(alpha, resolution)])
            log(f"{name}: built in an earlier run of this sweep, kept")
            continue
        progress = lambda stage, name=name, index=index: on_progress(SweepProgress(index, len(grid), name, stage))  # noqa: E731
        built.append(_build_one(config, alpha, resolution, out, transfer, progress, log))
        _write_built(out, config, built)
    rows = _measure_in_rounds(config, target, rpc, built, on_progress, log)
    result = SweepResult(config, rows, len(earlier), time.time() - started, transfer.to_json())
    write_results(out, result, plots=True)
    return result


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


def _model_name(alpha: float, resolution: int) -> str:
    return f"mobilenet_v1_{alpha:g}_{resolution}"


def _earlier_builds(out: Path, config: SweepConfig, log) -> dict[tuple[float, int], BuiltModel]:
    """Models an earlier run of the same sweep (same target, budget, seed) built in the same --out.

    ``built.json`` is the build phase's record; a ``sweep.json`` alone (a sweep finished before
    that file existed) serves as well."""
    path = out / BUILT_JSON if (out / BUILT_JSON).exists() else out / RESULTS_JSON
    if not path.exists():
        return {}
    try:
        payload = json.loads(path.read_text())
        if payload.get("identity") != config.identity():
            log(f"{path} holds a sweep with other settings ({payload.get('identity')}); building every model again")
            return {}
        builds = [BuiltModel.from_json(row) for row in payload["rows"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInputError(f"{str(path)!r} is not a readable sweep result ({exc}); remove it or choose another --out") from None
    wanted = set(config.grid)
    return {(b.alpha, b.resolution): b for b in builds if (b.alpha, b.resolution) in wanted and Path(b.artifact).exists()}


def _write_built(out: Path, config: SweepConfig, built: list[BuiltModel]) -> None:
    from tvmc_mobilenet.runtime.results import atomic_write_bytes

    payload = {"identity": config.identity(), "rows": [b.to_json() for b in built]}
    atomic_write_bytes(out / BUILT_JSON, (json.dumps(payload, indent=2) + "\n").encode())


class _Transfer:
    """Distinct tuning tasks over the grid, and the trials the shared database saved."""

    def __init__(self) -> None:
        self.task_keys: set[int] = set()
        self.tasks_per_model = 0
        self.trials_run = 0
        self.trials_reused = 0
        self.tuning_seconds = 0.0

    def add(self, tune_result) -> None:
        from tvmc_mobilenet.compiler.tuning_db import workload_key

        keys = {workload_key(o.task.mod) for o in tune_result.outcomes}
        self.tasks_per_model += len(keys)
        self.task_keys |= keys
        self.trials_run += tune_result.trials_run
        self.trials_reused += tune_result.trials_before
        self.tuning_seconds += tune_result.seconds

    def to_json(self) -> dict[str, Any]:
        if not self.tasks_per_model:
            return {}
        per_trial = self.tuning_seconds / self.trials_run if self.trials_run else 0.0
        return {
            "tasks_summed_over_models": self.tasks_per_model,
            "distinct_tasks": len(self.task_keys),
            "trials_run": self.trials_run,
            "trials_reused_from_other_models": self.trials_reused,
            "tuning_seconds": round(self.tuning_seconds, 1),
            # Tuning each model alone would have run its whole budget; the reused trials were not
            # run again, at this sweep's own measured seconds per trial.
            "estimated_seconds_saved": round(self.trials_reused * per_trial, 1),
        }


def _build_one(config, alpha, resolution, out: Path, transfer: _Transfer, progress, log) -> BuiltModel:
    from tvmc_mobilenet.compiler.build import BuildConfig, build_model
    from tvmc_mobilenet.model.cost import model_cost

    name = _model_name(alpha, resolution)
    tuning_dir = out / TUNING_DIR
    trials_run = trials_reused = 0
    tuning_seconds = 0.0
    if config.trials_per_model:
        from tvmc_mobilenet.compiler.tune import TuneConfig, tune_model

        progress("tuning")
        tuned = tune_model(
            TuneConfig(
                alpha=alpha,
                resolution=resolution,
                target=config.target,
                cuda_arch=config.cuda_arch,
                cuda_compiler=config.cuda_compiler,
                trials=config.trials_per_model,
                work_dir=tuning_dir,
                rpc_tracker=config.rpc_tracker,
                rpc_key=config.rpc_key,
                search_seed=config.seed + 1,
            ),
            log=lambda m: log(f"{name}: {m}"),
        )
        transfer.add(tuned)
        trials_run, trials_reused, tuning_seconds = tuned.trials_run, tuned.trials_before, tuned.seconds
    progress("building")
    build_started = time.time()
    result = build_model(
        BuildConfig(
            alpha=alpha,
            resolution=resolution,
            target=config.target,
            cuda_arch=config.cuda_arch,
            cuda_compiler=config.cuda_compiler,
            seed=config.seed,
            tuning_db=tuning_dir if config.trials_per_model else None,
            no_tuning_db=not config.trials_per_model,
            output=out / ARTIFACTS_DIR / f"{name}.tar",
        )
    )
    cost = model_cost(ModelConfig(alpha=alpha, resolution=resolution))
    accuracy = published_top1(alpha, resolution)
    log(f"{name}: built ({result.manifest['tuning']['kernels_tuned']} of {result.manifest['tuning']['kernels_total']} kernels tuned)")
    return BuiltModel(
        alpha=alpha,
        resolution=resolution,
        name=name,
        mult_adds=cost.mult_adds,
        params=cost.params,
        top1=accuracy.top1 if accuracy else None,
        top1_source=accuracy.source if accuracy else None,
        trials_run=trials_run,
        trials_reused=trials_reused,
        tuning_seconds=round(tuning_seconds, 1),
        build_seconds=round(time.time() - build_started, 1),
        kernels_tuned=result.manifest["tuning"]["kernels_tuned"],
        kernels_total=result.manifest["tuning"]["kernels_total"],
        artifact=str(result.artifact_path),
    )


def _measure_in_rounds(config: SweepConfig, target, rpc, built: list[BuiltModel], on_progress, log) -> list[SweepRow]:
    """Check every model on the target, then time each once per round, round after round.

    A model's row is its fastest round (lowest median). Locally the models stay loaded between
    rounds; over RPC each is loaded for its turn only (a board's RPC server serves one session).
    """
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local, load_remote, verify_on_reference

    artifacts = [open_artifact(Path(b.artifact)) for b in built]
    loaded: dict[str, Any] = {}
    rounds: dict[str, list] = {b.name: [] for b in built}
    timing = dict(number=config.number, repeat=config.repeat, warmup=config.warmup)
    for number in range(config.rounds):
        for index, (model, artifact) in enumerate(zip(built, artifacts, strict=True)):
            on_progress(SweepProgress(index, len(built), model.name, f"measuring, round {number + 1} of {config.rounds}"))
            loaded_model = loaded.get(model.name)
            if loaded_model is None:
                loaded_model = load_remote(artifact, rpc) if rpc is not None else load_local(artifact)
                if rpc is None:
                    loaded[model.name] = loaded_model
            try:
                if number == 0:
                    verify_on_reference(loaded_model, artifact)  # raises on a mismatch
                rounds[model.name].append(loaded_model.time(artifact.reference_input(), **timing))
            finally:
                if rpc is not None:
                    loaded_model.close()  # the session ends before the next model's begins
    rows = []
    for model in built:
        best = min(rounds[model.name], key=lambda stats: stats.median_ms)
        medians = [round(stats.median_ms, 4) for stats in rounds[model.name]]
        log(f"{model.name}: {best.median_ms:.3f} ms (p90 {best.p90_ms:.3f}) on {target.name}; round medians {medians}")
        rows.append(
            SweepRow(
                **asdict(model),
                latency_median_ms=best.median_ms,
                latency_p90_ms=best.p90_ms,
                throughput_per_s=1e3 / best.median_ms,
                gflops=2 * model.mult_adds / (best.median_ms * 1e6),
                verification="passed on the target",  # verify_on_reference raised otherwise
                latency_rounds_ms=medians,
            )
        )
    return rows
