"""The search side of tuning: budget, search strategy, task scheduler, and a clean stop.

All of it is MetaSchedule's machinery (EvolutionarySearch with the XGBoost cost model, the
gradient-based choice of the next task); three things are adjusted:

* the population of the evolutionary search is sized to the batch it picks
  (:func:`evolutionary_search`);
* the task scheduler (:func:`batchwise_gradient`) picks tasks by MetaSchedule's gradient rule
  but collects each batch's results as soon as it is measured. The stock ``GradientBased``
  scheduler measures every task's first batch and only then collects them all: until that first
  round ends (minutes for a 21-task model) nothing reaches the database or the progress display,
  and a killed tune loses the whole round;
* a stop request (Ctrl-C, SIGTERM) makes the search propose nothing more (:func:`stoppable`), so
  the tune ends after the batch in flight with every measured record committed.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from typing import Any

#: Candidates per search iteration at most (MetaSchedule's default).
MAX_TRIALS_PER_ITER = 64


def plan_budget(remaining: int, n_tasks: int) -> tuple[int, int]:
    """(trials per search iteration, most trials one task may take) for the gradient scheduler.

    The scheduler first gives every task one iteration, then spends the rest where the
    estimated end-to-end gain is largest. The warm-up round takes at most half the budget, and no
    task may take trials that another task's first iteration needs, so no task is left untuned
    when the budget allows one trial each.
    """
    per_iter = max(1, min(MAX_TRIALS_PER_ITER, remaining // (2 * n_tasks)))
    max_per_task = max(per_iter, remaining - (n_tasks - 1) * per_iter)
    return per_iter, max_per_task


class GracefulStop:
    """Ctrl-C (or SIGTERM) during the search: finish the batch in flight, then stop.

    The batch's records are committed by MetaSchedule's AddToDatabase callback before ours runs,
    so nothing measured is lost. A second Ctrl-C aborts at once.
    """

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, _frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.log("stopping after the batch in flight (press Ctrl-C again to abort at once)")

    def __enter__(self) -> GracefulStop:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def evolutionary_search(per_iter: int):
    """MetaSchedule's evolutionary search, its population sized to the batch it must pick.

    The defaults (population 512, at least 50 fresh random samples per iteration) suit batches of
    64; for a batch of a few candidates they make the search, not the measurement, the cost of a
    trial (a 64-trial tune of a 21-task model ran at 7 trials/min here).
    """
    from tvm.s_tir import meta_schedule as ms

    population = int(os.environ.get("TVMC_MOBILENET_POPULATION", 0)) or max(64, min(512, 8 * per_iter))
    return ms.search_strategy.EvolutionarySearch(
        population_size=population,
        init_min_unmeasured=max(8, min(50, population // 8)),
    )


def stoppable(strategy, stop: GracefulStop):
    """Wrap a search strategy so that it proposes nothing more once a stop is requested.

    MetaSchedule's task scheduler then marks each task finished without measuring; a task it
    is measuring completes its batch (and the batch is committed) first. Terminating tasks from
    a callback would not do: the gradient scheduler's first round visits every task regardless.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.search_strategy import PySearchStrategy

    @derived_object
    class StoppableSearch(PySearchStrategy):
        def __init__(self, inner) -> None:
            self.inner = inner

        def _initialize_with_tune_context(self, context) -> None:
            self.inner._initialize_with_tune_context(context)

        def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None) -> None:
            self.inner.pre_tuning(max_trials, num_trials_per_iter, design_spaces, database, cost_model)

        def post_tuning(self) -> None:
            self.inner.post_tuning()

        def generate_measure_candidates(self):
            return None if stop.requested else self.inner.generate_measure_candidates()

        def notify_runner_results(self, measure_candidates, results) -> None:
            self.inner.notify_runner_results(measure_candidates, results)

        def clone(self):
            return StoppableSearch(self.inner.clone())

    return StoppableSearch(strategy)


def batchwise_gradient(seed: int | None = None, alpha: float = 0.2, window: int = 3, seeded: frozenset[int] = frozenset()):
    """MetaSchedule's gradient-based task choice, collecting each batch right after it runs.

    ``seeded`` tasks already have a measured record (our default schedule): the first round
    gives the other tasks their first batch before them, so a small budget reaches every task.

    The rule is MetaSchedule's ``GradientBased`` (same ``alpha`` and ``window``): after one batch
    for every task, the next task is the one whose weighted latency is expected to drop most,
    from the recent slope of its best latency and its best latency per trial round.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.task_scheduler import PyTaskScheduler

    from tvmc_mobilenet.tuning.database import run_seconds

    @derived_object
    class BatchwiseGradient(PyTaskScheduler):
        # Only ``next_task_id`` is overridden. MetaSchedule's own loop runs and asks it for task
        # ids; overriding ``tune`` or ``join_running_task`` too would recurse in TVM 0.27, whose
        # Python base methods call back into the virtual C++ method.
        def __init__(self) -> None:
            super().__init__()
            self.rng = random.Random(seed)
            self.history: dict[int, list[float]] = {}
            self.best: dict[int, float] = {}
            self.rounds = 0

        def next_task_id(self) -> int:
            records = self._outer().tasks_
            for i, record in enumerate(records):  # collect the batch measured last
                if record.measure_candidates is not None and not record.is_terminated:
                    self._record(i, self.join_running_task(i))
            alive = [i for i, record in enumerate(records) if not record.is_terminated]
            if not alive:
                return -1
            first_round = [i for i in range(len(records)) if i not in seeded] + [i for i in range(len(records)) if i in seeded]
            while self.rounds < len(records):  # first round: every task once, unseeded ones first
                task_id = first_round[self.rounds]
                self.rounds += 1
                if task_id in alive:
                    return task_id
            grads = [self._gradient(i) for i in alive]
            best = max(grads)
            return self.rng.choice([i for i, g in zip(alive, grads, strict=True) if g == best])

        def _gradient(self, i: int) -> float:
            history = self.history.get(i, [])
            if not history:
                return math.inf
            best, n = history[-1], len(history)
            backward = (history[-1 - window] - best) / window if n >= 1 + window else 0.0
            weight = float(self._outer().tasks_[i].task_weight)
            return weight * (alpha * backward + (1 - alpha) * best / n)

        def _record(self, task_id: int, results) -> None:
            best = self.best.get(task_id, math.inf)
            for result in results:
                seconds = run_seconds(result.run_secs) if result.error_msg is None else None
                if seconds is not None:
                    best = min(best, 1e3 * seconds)
            self.best[task_id] = best
            # An untimed task (every candidate failed) counts as slow, as in MetaSchedule (1e100 ms).
            self.history.setdefault(task_id, []).append(best if best < math.inf else 1e100)

    return BatchwiseGradient()
