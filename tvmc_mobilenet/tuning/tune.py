"""Tune: MetaSchedule's search over a model's kernels, into the target's tuning database.

``tune_model(TuneConfig) -> TuneResult`` is the whole of ``tvmc-mobilenet tune``. The search is
MetaSchedule's (evolutionary search with the XGBoost cost model, gradient task scheduler); what
this module adds is the budget (counted across runs, so a rerun continues instead of starting
over), task selection by kind, a faster builder (:mod:`.measure`), a scheduler that commits every
batch as it is measured and stops cleanly on Ctrl-C (:mod:`.search`), progress, the lock that keeps
two tunes out of one database, and the report.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tvmc_mobilenet.compiler.tasks import Task, parse_task_filter
from tvmc_mobilenet.errors import BadInputError, RpcError, TargetError, TuningError, TuningInterrupted
from tvmc_mobilenet.options import ModelOptions, RpcOptions, TargetOptions
from tvmc_mobilenet.targets.registry import Device, Measure, ResolvedTarget, require_buildable
from tvmc_mobilenet.tuning.database import estimated_latency_ms, run_seconds

REPORT_FILE = "tuning_report.json"
#: One line per tune run (model, trials, seconds), appended: the history of a database.
HISTORY_FILE = "tuning_runs.jsonl"


#: Choices of :attr:`TuneConfig.space`.
SPACES = ("ours", "generic")


@dataclass(frozen=True)
class TuneConfig:
    model: ModelOptions = field(default_factory=ModelOptions)
    target: TargetOptions = field(default_factory=TargetOptions)
    #: Boards to measure on, through a tracker (``tracker`` and ``key``; ``timeout`` is unused:
    #: a measurement's deadline is :attr:`timeout`).
    rpc: RpcOptions = field(default_factory=RpcOptions)
    #: Total trials wanted for this model's tasks, counting records already in the database.
    trials: int = 1000
    work_dir: Path | None = None
    #: ``all`` or a comma-separated list of task kinds (depthwise, pointwise, conv, dense, pool, other).
    tasks: str = "all"
    #: Continue an earlier tune: the database must exist already.
    resume: bool = False
    #: Seconds a candidate may take to build, and to run.
    timeout: float = 60.0
    #: Seed of the search (None: random).
    search_seed: int | None = None
    #: Design space for pointwise and depthwise kernels: ``ours`` (schedules/) or MetaSchedule's
    #: ``generic`` one (as every other kernel gets), e.g. to compare the two.
    space: str = "ours"
    #: Tune on boards that run on this machine (the emulated device) all the same: its timings are
    #: qemu's, not the board's, so by default such a tune is refused.
    allow_emulated: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise BadInputError(f"--trials must be a positive integer, got {self.trials!r}")
        if not (isinstance(self.timeout, (int, float)) and 1 <= self.timeout <= 3600):
            raise BadInputError(f"--timeout must be between 1 and 3600 seconds, got {self.timeout!r}")
        if self.rpc.host is not None or self.rpc.port is not None:
            raise BadInputError("tuning measures on the boards registered with a tracker: give --rpc-tracker and --rpc-key")
        parse_task_filter(self.tasks)
        if self.space not in SPACES:
            raise BadInputError(f"--space must be one of {', '.join(SPACES)}, got {self.space!r}")


@dataclass
class TaskOutcome:
    task: Task
    trials_before: int
    trials: int
    best_seconds: float | None

    @property
    def gflops(self) -> float | None:
        return self.task.flops / self.best_seconds / 1e9 if self.best_seconds else None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.task.to_json(),
            "trials_before": self.trials_before,
            "trials": self.trials,
            "best_ms": self.best_seconds * 1e3 if self.best_seconds else None,
            "gflops": self.gflops,
        }


@dataclass
class TuneProgress:
    """What the progress display shows; passed to the ``on_progress`` callback after each batch."""

    trials_done: int  # in this run
    trials_total: int  # to run in this run
    tasks_measured: int  # tasks with at least one successful measurement (this run or before)
    tasks_total: int
    #: Σ weight × best latency over the tuned tasks (ms), None until every task has one.
    estimated_latency_ms: float | None
    elapsed_s: float


@dataclass
class TuneResult:
    work_dir: Path
    target: str
    model: dict[str, Any]
    outcomes: list[TaskOutcome]
    skipped: list[Task]
    trials_requested: int
    trials_before: int
    trials_run: int
    seconds: float
    interrupted: bool
    #: (trials run so far in this run, seconds, estimated latency in ms) after each batch.
    curve: list[tuple[int, float, float | None]] = field(default_factory=list)
    time_breakdown: dict[str, float] = field(default_factory=dict)
    #: The design space pointwise and depthwise kernels were tuned in (see TuneConfig.space).
    space: str = "ours"

    def space_of(self, task: Task) -> str:
        return task.space if self.space == "ours" else "generic"

    @property
    def estimated_latency_ms(self) -> float | None:
        return estimated_latency_ms((o.task.weight, o.best_seconds) for o in self.outcomes)

    @property
    def trials_per_minute(self) -> float:
        return 60.0 * self.trials_run / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "target": self.target,
            "model": self.model,
            "work_dir": str(self.work_dir),
            "trials_requested": self.trials_requested,
            "trials_before": self.trials_before,
            "trials_run": self.trials_run,
            "seconds": round(self.seconds, 2),
            "trials_per_minute": round(self.trials_per_minute, 2),
            "interrupted": self.interrupted,
            "estimated_latency_ms": self.estimated_latency_ms,
            "space": self.space,
            "tasks": [{**o.to_json(), "space": self.space_of(o.task)} for o in self.outcomes],
            "skipped": [{**t.to_json(), "reason": "no arithmetic to tune"} for t in self.skipped],
            "time_breakdown_s": self.time_breakdown,
            "curve": [{"trials": n, "seconds": round(s, 2), "estimated_latency_ms": e} for n, s, e in self.curve],
        }


def tune_model(
    config: TuneConfig,
    log: Callable[[str], None] = lambda _msg: None,
    on_progress: Callable[[TuneProgress], None] = lambda _p: None,
) -> TuneResult:
    started = time.time()
    target = config.target.resolve()
    rpc = _require_tunable(target, config)
    from tvmc_mobilenet.tuning.database import create_database_dir, default_database_dir, exclusive_lock, open_tuning_database

    work_dir = Path(config.work_dir) if config.work_dir is not None else default_database_dir(target.name)
    if config.resume and not (work_dir.is_dir() and any(work_dir.iterdir())):
        raise TuningError(f"--resume: there is no earlier tune in {str(work_dir)!r} to continue; run without --resume")
    create_database_dir(work_dir)
    with exclusive_lock(work_dir):  # the database's only writer from here on
        database = open_tuning_database(work_dir, writer=True)
        database.require_target(target.tvm_target())
        return _tune_locked(config, target, rpc, database, started, log, on_progress)


def _require_tunable(target: ResolvedTarget, config: TuneConfig):
    """Check the target can be tuned from here; returns its RpcTarget when measured remotely."""
    from tvmc_mobilenet.runtime.rpc import RpcTarget

    require_buildable(target, config.target.requested_compiler)
    rpc = RpcTarget.from_options(config.rpc, call_timeout=config.timeout)
    remote = target.spec.measure is not Measure.LOCAL or not target.runs_here
    if remote and rpc is None and target.spec.device is Device.CUDA and target.spec.measure is Measure.LOCAL:
        raise TargetError(
            f"tuning {target.name!r} measures kernels on an NVIDIA GPU and this machine has none: run tune on the GPU machine, "
            "or give --rpc-tracker HOST[:PORT] --rpc-key KEY of a GPU's TVM RPC server"
        )
    if remote and rpc is None:
        key = target.spec.rpc_key or "KEY"
        raise TargetError(
            f"target {target.name!r} is measured on the device itself: give --rpc-tracker HOST[:PORT] --rpc-key {key}, "
            "the tracker its boards are registered with"
        )
    if not remote and rpc is not None:
        raise BadInputError(f"target {target.name!r} runs on this machine; drop --rpc-tracker/--rpc-key")
    return rpc


def _quiet_metaschedule() -> None:
    """MetaSchedule prints its task tables to stdout at DEBUG unless its logger has a level."""
    import logging

    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    if ms_logger.level == logging.NOTSET:
        ms_logger.setLevel(logging.WARNING)


@contextlib.contextmanager
def _foreign_log_handlers_set_aside():
    """Let MetaSchedule configure its loggers, then give back handlers that others attached.

    MetaSchedule's ``create_loggers`` re-lists the handlers already on its logger by name in a
    ``logging.config.dictConfig`` it builds, and fails (``'NoneType' object has no attribute
    'format'``) on one without a name or one its config does not define: e.g. pytest's capture
    handler, which pytest attaches to every logger that does not propagate.
    """
    import logging

    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    foreign = [h for h in ms_logger.handlers if not (h.get_name() or "").startswith(ms_logger.name)]
    for handler in foreign:
        ms_logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in foreign:
            ms_logger.addHandler(handler)  # a no-op for one already there


def _tune_locked(config, target, rpc, database, started, log, on_progress) -> TuneResult:
    from tvmc_mobilenet.compiler.model_source import import_model
    from tvmc_mobilenet.compiler.passes import legalize_and_fuse
    from tvmc_mobilenet.compiler.tasks import extract_tasks
    from tvmc_mobilenet.tuning.database import workload_key

    tvm_target = target.tvm_target()
    loaded = import_model(config.model, log, tvm_target)
    all_tasks = extract_tasks(legalize_and_fuse(loaded.mod, tvm_target), tvm_target)
    kinds = parse_task_filter(config.tasks)
    wanted = [t for t in all_tasks if kinds is None or t.kind in kinds]
    skipped = [t for t in wanted if t.flops == 0]
    tasks = [t for t in wanted if t.flops > 0]
    if not tasks:
        raise BadInputError(f"the model has no tasks of the kinds {config.tasks!r} to tune")

    def outcomes_now(before: dict[str, int] | None = None) -> list[TaskOutcome]:
        records = database.records_by_workload()
        out = []
        for task in tasks:
            entry = records.get(workload_key(task.mod))
            trials = entry.trials if entry else 0
            out.append(TaskOutcome(task, before[task.name] if before else trials, trials, entry.best_seconds if entry else None))
        return out

    initial = outcomes_now()
    trials_before = sum(o.trials for o in initial)
    remaining = config.trials - trials_before
    result = TuneResult(
        work_dir=database.path,
        target=target.name,
        model=loaded.description,
        outcomes=initial,
        skipped=skipped,
        trials_requested=config.trials,
        trials_before=trials_before,
        trials_run=0,
        seconds=0.0,
        interrupted=False,
        space=config.space,
    )
    log(f"{len(tasks)} tasks to tune ({len(all_tasks)} in the model); database {database.path} holds {trials_before} of their trials")
    if remaining <= 0:
        log(f"already tuned: {trials_before} trials of the {config.trials} requested are in the database")
        result.seconds = time.time() - started
        _write_report(result)
        return result

    if remaining < len(tasks):
        log(
            f"warning: {remaining} trials left for {len(tasks)} tasks: some tasks stay untuned "
            f"(use --trials ≥ {trials_before + len(tasks)})"
        )
    before = {o.task.name: o.trials for o in initial}
    progress = _ProgressTracker(tasks, initial, remaining, on_progress)
    from tvmc_mobilenet.tuning.search import GracefulStop

    measure = _measurement(target, rpc, config, log)
    with GracefulStop(log) as stop:
        progress.stop = stop
        progress.device_check = measure.device_check
        _run_search(config, tasks, database, remaining, measure, progress, stop)
    interrupted = stop.requested
    result.outcomes = outcomes_now(before)
    result.trials_run = sum(o.trials for o in result.outcomes) - trials_before
    result.seconds = time.time() - started
    result.interrupted = interrupted
    result.curve = progress.curve
    result.time_breakdown = progress.time_breakdown
    _write_report(result)
    if progress.device_lost:
        raise RpcError(
            f"{progress.device_lost}; stopped after {result.trials_run} trials, every record measured so far is kept "
            f"in {result.work_dir} and a rerun continues from there"
        )
    if interrupted:
        raise TuningInterrupted(
            f"tuning interrupted after {result.trials_run} trials; every record measured so far is kept in "
            f"{result.work_dir} and a rerun continues from there",
            result,
        )
    return result


@dataclass
class _Measurement:
    """How candidates are built and timed: on this machine, or on boards over RPC."""

    search_threads: int
    make_builder: Callable[[], Any]
    make_runner: Callable[[], Any]
    #: After a batch whose every run failed: a message if the devices are gone, else None.
    device_check: Callable[[], str | None] = lambda: None


def _measurement(target: ResolvedTarget, rpc, config: TuneConfig, log) -> _Measurement:
    from tvmc_mobilenet.tuning.measure import local_runner, persistent_builder, rpc_runner
    from tvmc_mobilenet.runtime.executor import use_all_cores

    host_threads = use_all_cores()
    if rpc is None:
        # Kernels run with every core: the runner's worker inherits TVM_NUM_THREADS.
        threads = int(target.target_json.get("num-cores") or host_threads)
        os.environ["TVM_NUM_THREADS"] = str(threads)
        builder = lambda: persistent_builder(threads, config.timeout, cuda_compiler=config.target.cuda_compiler)  # noqa: E731
        return _Measurement(threads, builder, lambda: local_runner(config.timeout))
    from tvmc_mobilenet.runtime.rpc import servers_for_key, tracker_summary

    boards = servers_for_key(tracker_summary(rpc.tracker_host, rpc.tracker_port, rpc.connect_timeout), rpc.key)
    if boards == 0:
        raise RpcError(f"no device is registered under {rpc.describe()}; start its RPC server first")
    if not config.allow_emulated:
        _refuse_emulated(target, rpc)
    log(f"measuring on {boards} device(s) under {rpc.describe()}, building here with {target.spec.cross_compiler}")
    cross = target.spec.cross_compiler

    def device_check() -> str | None:
        try:
            left = servers_for_key(tracker_summary(rpc.tracker_host, rpc.tracker_port, rpc.connect_timeout), rpc.key)
        except RpcError as exc:
            return f"the tracker went away ({exc})"
        return None if left else f"no device is registered under {rpc.describe()} any more"

    return _Measurement(
        host_threads,
        lambda: persistent_builder(host_threads, config.timeout, cross_compiler=cross, cuda_compiler=config.target.cuda_compiler),
        lambda: rpc_runner(rpc, config.timeout, max_workers=boards),
        device_check,
    )


def _refuse_emulated(target: ResolvedTarget, rpc) -> None:
    """Refuse to tune on a device that runs on this machine: an emulated board's timings are
    qemu's, and the records they choose would mislead every later build for the real board."""
    from tvmc_mobilenet.runtime.rpc import open_session, runs_on_this_machine

    session = open_session(rpc)
    try:
        emulated = runs_on_this_machine(session, rpc.connect_timeout)
    finally:
        del session  # the board's server serves one session at a time
    if emulated:
        raise TargetError(
            f"the device under {rpc.describe()} runs on this machine (its RPC workspace is on this machine's disk): an "
            f"emulated {target.name}, whose timings are qemu's, not the board's, so the schedules tuned on it would "
            "mislead every build for the real board; tune on the board, or give --allow-emulated to tune on it anyway"
        )


def _run_search(config: TuneConfig, tasks: list[Task], database, remaining: int, measure: _Measurement, progress, stop) -> None:
    from tvm.s_tir import meta_schedule as ms

    from tvmc_mobilenet.schedules.intrinsics import register_tensor_intrinsics
    from tvmc_mobilenet.schedules import register_design_spaces
    from tvmc_mobilenet.schedules.spaces import design_space
    from tvmc_mobilenet.tuning.search import batchwise_gradient, evolutionary_search, plan_budget, stoppable

    _quiet_metaschedule()
    register_tensor_intrinsics(tasks[0].extracted.target)
    register_design_spaces(tasks[0].extracted.target, generic=config.space == "generic")
    builder = measure.make_builder()
    runner = measure.make_runner()
    profiler = ms.Profiler()
    try:
        seeded: list[int] = []
        if config.space == "ours":
            seeded = measure_default_schedules(tasks, database.database, builder, runner, remaining, progress.update)
            remaining -= len(seeded)
            if remaining <= 0 or stop.requested:
                return
        per_iter, max_per_task = plan_budget(remaining, len(tasks))
        with _foreign_log_handlers_set_aside():
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                [t.extracted for t in tasks],
                work_dir=str(database.path),
                space=design_space(tasks[0].extracted.target),
                strategy=stoppable(evolutionary_search(per_iter), stop),
                num_threads=measure.search_threads,
                seed=config.search_seed,
            )
        callbacks = list(ms.MeasureCallback.create("default")) + [progress.callback()]
        with profiler:
            ms.tune_tasks(
                tasks=contexts,
                task_weights=weights,
                work_dir=str(database.path),
                max_trials_global=remaining,
                max_trials_per_task=max_per_task,
                num_trials_per_iter=per_iter,
                builder=builder,
                runner=runner,
                database=database.database,
                cost_model="xgb",
                measure_callbacks=callbacks,
                task_scheduler=batchwise_gradient(seed=config.search_seed, seeded=frozenset(seeded)),
            )
    finally:
        builder.shutdown()
        runner.pool.shutdown()
        progress.time_breakdown = {name: round(float(secs), 2) for name, secs in profiler.get().items()}


def measure_default_schedules(tasks: list[Task], database, builder, runner, budget: int, on_measured=lambda _i, _r: None) -> list[int]:
    """Measure our default schedule of each task that has no record yet (the one an untuned build
    uses), and commit it as the task's first record. The search then starts from it, and a build
    never applies a schedule measured slower than the untuned build's: at small budgets
    MetaSchedule's first random samples often are slower, in our spaces and the generic one.
    Returns the indices of the tasks measured (one trial each, ≤ budget);
    ``on_measured(task index, [RunnerResult])`` sees each measurement.
    """
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    from tvmc_mobilenet.tuning.database import FAILED_RUN_RECORD_SECONDS, workload_key
    from tvmc_mobilenet.schedules import default_schedule

    # Tasks with records, failed ones included (MetaSchedule's get_top_k skips those): a default
    # schedule that failed once is not retried by every later tune.
    tried = {int(record.workload.as_json()[0]) for record in database.get_all_tuning_records()}
    jobs = []
    for index, task in enumerate(tasks):
        if len(jobs) >= budget:
            break
        if workload_key(task.mod) in tried:
            continue  # tuned before (an earlier run, or another model of a sweep)
        workload = database.commit_workload(task.mod)
        target = task.extracted.target
        sch = default_schedule(task.mod["main"], target)
        if sch is None:
            continue
        replay = s_tir.Schedule(task.mod)  # the trace, replayed on the task's own module
        sch.trace.apply_to_schedule(replay, remove_postproc=False)
        # The arguments as the scheduled kernel takes them, as MetaSchedule's own candidates are
        # measured: a schedule that repacks a weight in place (the first int8 convolution's dot
        # product) changes that parameter's shape, and the task's would not match it.
        jobs.append((index, task, workload, replay, ms.arg_info.ArgInfo.from_entry_func(replay.mod, remove_preproc=True)))
    if not jobs:
        return []
    built = builder.build([ms.builder.BuilderInput(replay.mod, task.extracted.target) for _, task, _, replay, _ in jobs])

    def commit(job, run_secs) -> None:
        index, task, workload, replay, args = job
        database.commit_tuning_record(ms.database.TuningRecord(replay.trace, workload, run_secs, task.extracted.target, args))

    inputs, measured = [], []
    for job, build in zip(jobs, built, strict=True):
        if build.error_msg is None:
            device = "cuda" if job[1].extracted.target.kind.name == "cuda" else "cpu"
            inputs.append(ms.runner.RunnerInput(build.artifact_path, device, job[4]))
            measured.append(job)
        else:  # a failed trial, recorded as MetaSchedule records its own: with an impossible run time
            commit(job, [FAILED_RUN_RECORD_SECONDS])
            on_measured(job[0], [ms.runner.RunnerResult(None, f"default schedule did not build: {build.error_msg}")])
    try:
        for job, future in zip(measured, runner.run(inputs), strict=True):
            result = future.result()
            ok = result.error_msg is None and result.run_secs
            commit(job, result.run_secs if ok else [FAILED_RUN_RECORD_SECONDS])
            on_measured(job[0], [result])
    finally:  # what MetaSchedule's RemoveBuildArtifact callback does for the search's own trials
        for build in built:
            if build.artifact_path is not None:
                ms.utils.remove_build_dir(build.artifact_path)
    return [job[0] for job in jobs]


class _ProgressTracker:
    """Counts trials and best latencies as batches come back, and reports them."""

    def __init__(self, tasks: list[Task], initial: list[TaskOutcome], total: int, on_progress):
        self.tasks = tasks
        self.best = {o.task.name: o.best_seconds for o in initial}
        self.total = total
        self.done = 0
        self.started = time.time()
        self.on_progress = on_progress
        self.curve: list[tuple[int, float, float | None]] = []
        #: Seconds spent per MetaSchedule phase (builder, runner, search…), from its profiler.
        self.time_breakdown: dict[str, float] = {}
        self.stop = None
        self.device_check: Callable[[], str | None] = lambda: None
        #: Why the tune stopped early because its devices went away (None: they did not).
        self.device_lost: str | None = None

    def estimate_ms(self) -> float | None:
        return estimated_latency_ms((t.weight, self.best[t.name]) for t in self.tasks)

    def update(self, task_id: int, runner_results) -> None:
        name = self.tasks[task_id].name
        if runner_results and all(r.error_msg is not None for r in runner_results):
            lost = self.device_check()
            if lost and self.stop is not None:
                self.device_lost = lost
                self.stop.requested = True  # end after this batch, keeping what was measured
        for result in runner_results:
            self.done += 1
            seconds = run_seconds(result.run_secs) if result.error_msg is None else None
            if seconds is not None and (self.best[name] is None or seconds < self.best[name]):
                self.best[name] = seconds
        elapsed = time.time() - self.started
        estimate = self.estimate_ms()
        self.curve.append((self.done, elapsed, estimate))
        measured = sum(1 for t in self.tasks if self.best[t.name] is not None)
        self.on_progress(TuneProgress(self.done, self.total, measured, len(self.tasks), estimate, elapsed))

    def callback(self):
        from tvm.ir.utils import derived_object
        from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

        tracker = self

        @derived_object
        class _Callback(PyMeasureCallback):
            def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
                tracker.update(task_id, runner_results)

        return _Callback()


def _write_report(result: TuneResult) -> None:
    import json

    from tvmc_mobilenet.files import write_json

    report = result.to_json()
    write_json(result.work_dir / REPORT_FILE, report)
    if result.trials_run:
        keys = ("created", "model", "space", "trials_before", "trials_run", "seconds", "trials_per_minute", "interrupted")
        summary = {k: report[k] if k != "model" else report["model"]["name"] for k in keys}
        with open(result.work_dir / HISTORY_FILE, "a") as f:
            f.write(json.dumps(summary) + "\n")
