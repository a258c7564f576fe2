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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.files import atomic_write
from tvmc_mobilenet.model.accuracy import published_top1
from tvmc_mobilenet.model.spec import ModelConfig
from tvmc_mobilenet.options import ModelOptions, RpcOptions
from tvmc_mobilenet.sweep.report import write_results
from tvmc_mobilenet.sweep.results import (
    ARTIFACTS_DIR,
    BUILT_JSON,
    RESULTS_JSON,
    TUNING_DIR,
    BuiltModel,
    SweepConfig,
    SweepProgress,
    SweepResult,
    SweepRow,
)


def run_sweep(
    config: SweepConfig,
    log: Callable[[str], None] = lambda _m: None,
    on_progress: Callable[[SweepProgress], None] = lambda _p: None,
) -> SweepResult:
    """Build (tune) every model of the grid, then measure them all in interleaved rounds."""
    from tvmc_mobilenet.runtime.rpc import RpcTarget
    from tvmc_mobilenet.targets.registry import require_buildable

    started = time.time()
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {str(out)!r} is a file; give a directory for the sweep's results")
    target = config.target.resolve()
    require_buildable(target, config.target.requested_compiler)
    rpc = RpcTarget.from_options(config.rpc)
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
        name = _model_name(alpha, resolution, config.quantize)
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


def _model_name(alpha: float, resolution: int, quantize: str | None) -> str:
    return ModelOptions(alpha=alpha, resolution=resolution, quantize=quantize).model_name


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
    payload = {"identity": config.identity(), "rows": [b.to_json() for b in built]}
    atomic_write(out / BUILT_JSON, (json.dumps(payload, indent=2) + "\n").encode())


class _Transfer:
    """Distinct tuning tasks over the grid, and the trials the shared database saved."""

    def __init__(self) -> None:
        self.task_keys: set[int] = set()
        self.tasks_per_model = 0
        self.trials_run = 0
        self.trials_reused = 0
        self.tuning_seconds = 0.0

    def add(self, tune_result) -> None:
        from tvmc_mobilenet.tuning.database import workload_key

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
    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.model.cost import model_cost

    model = ModelOptions(alpha=alpha, resolution=resolution, seed=config.seed, quantize=config.quantize)

    name = _model_name(alpha, resolution, config.quantize)
    tuning_dir = out / TUNING_DIR
    trials_run = trials_reused = 0
    tuning_seconds = 0.0
    if config.trials_per_model:
        from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model

        progress("tuning")
        tuned = tune_model(
            TuneConfig(
                model=model,
                target=config.target,
                rpc=RpcOptions(tracker=config.rpc.tracker, key=config.rpc.key),
                trials=config.trials_per_model,
                work_dir=tuning_dir,
                search_seed=config.seed + 1,
                allow_emulated=config.allow_emulated,
            ),
            log=lambda m: log(f"{name}: {m}"),
        )
        transfer.add(tuned)
        trials_run, trials_reused, tuning_seconds = tuned.trials_run, tuned.trials_before, tuned.seconds
    progress("building")
    build_started = time.time()
    result = build_model(
        BuildConfig(
            model=model,
            target=config.target,
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
    from tvmc_mobilenet.runtime.commands import load
    from tvmc_mobilenet.runtime.executor import verify_on_reference

    artifacts = [open_artifact(Path(b.artifact)) for b in built]
    loaded: dict[str, Any] = {}
    rounds: dict[str, list] = {b.name: [] for b in built}
    timing = config.timing
    for number in range(config.rounds):
        for index, (model, artifact) in enumerate(zip(built, artifacts, strict=True)):
            on_progress(SweepProgress(index, len(built), model.name, f"measuring, round {number + 1} of {config.rounds}"))
            loaded_model = loaded.get(model.name)
            if loaded_model is None:
                loaded_model = load(artifact, rpc)
                if rpc is None:
                    loaded[model.name] = loaded_model
            try:
                if number == 0:
                    verify_on_reference(loaded_model, artifact)  # raises on a mismatch
                rounds[model.name].append(
                    loaded_model.time(artifact.reference_input(), number=timing.number, repeat=timing.repeat, warmup=timing.warmup)
                )
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
