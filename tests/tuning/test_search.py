"""Search settings: the trial budget and the clean stop."""

import os
import signal

import pytest

from tvmc_mobilenet.tuning.search import GracefulStop, plan_budget


@pytest.mark.parametrize(
    "remaining, tasks, per_iter, max_per_task",
    [
        (64, 21, 1, 44),  # one trial each first, the rest where it helps most
        (2000, 21, 47, 2000 - 20 * 47),
        (10_000, 21, 64, 10_000 - 20 * 64),  # never more than MetaSchedule's 64 per batch
        (5, 1, 2, 5),
    ],
)
def test_budget_leaves_no_task_untuned(remaining, tasks, per_iter, max_per_task):
    assert plan_budget(remaining, tasks) == (per_iter, max_per_task)
    got_iter, got_max = plan_budget(remaining, tasks)
    assert tasks * got_iter <= remaining  # the first round fits the budget
    assert got_max + (tasks - 1) * got_iter <= remaining


def test_first_signal_requests_a_stop_second_aborts():
    messages = []
    with GracefulStop(messages.append) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and "stopping after the batch in flight" in messages[0]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
