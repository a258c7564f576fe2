"""Fixtures (one tiny artifact built per session), the private cache directory, the skips of the
hardware markers, and the fault-injection ledger. Shared helpers live in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.fault_ledger import KINDS, FaultLedger, report_path
from tests.helpers import HARDWARE_MARKERS, TINY
from tvmc_mobilenet.options import ModelOptions
from tvmc_mobilenet.build import BuildConfig, build_model


def pytest_configure(config):
    """Keep the user's tuning databases out of the tests: a private cache directory per run. And
    give SIGINT and SIGHUP their default actions: a suite started by ``nohup``, or in the
    background of a shell without job control, inherits them ignored, and so would every command
    the signal tests start (a tracker that ignores the SIGHUP it is meant to stop on)."""
    config.private_cache = os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="tvmc-mobilenet-test-cache-")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "private_cache", ""), ignore_errors=True)


#: Counts of the fault-injection suite (tests marked ``faults``), printed at the end of the session.
FAULTS = FaultLedger()


@pytest.fixture
def fault_ledger() -> FaultLedger:
    return FAULTS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("faults")
    if marker is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    kind = marker.args[0] if marker.args else None
    if kind not in KINDS:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.faults takes one of {KINDS}, got {kind!r}")
    FAULTS.record(item.nodeid, kind, report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FAULTS.scenarios:
        return
    terminalreporter.write_sep("-", "fault injection")
    terminalreporter.write_line(FAULTS.summary())
    path = report_path(config.rootpath)
    FAULTS.write(path)
    terminalreporter.write_line(f"counts per scenario: {path}")


def pytest_runtest_setup(item):
    """The hardware markers (tests/helpers.py: HARDWARE_MARKERS) skip, with the reason, where the
    tool or device they name is missing."""
    for name, missing in HARDWARE_MARKERS.items():
        if item.get_closest_marker(name) is not None:
            reason = missing()
            if reason:
                pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory) -> Path:
    """A verified host artifact of the tiny network (built once per test session)."""
    out = tmp_path_factory.mktemp("artifacts") / "tiny.tar"
    build_model(BuildConfig(model=ModelOptions(**TINY), output=out))
    return out


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    """A private copy of the tiny artifact that a test may damage."""
    copy = tmp_path / "copy.tar"
    shutil.copyfile(tiny_artifact, copy)
    return copy
