"""Shared fixtures: one tiny artifact built per session, probes for optional hardware/tools."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from tests.fault_ledger import KINDS, FaultLedger, report_path
from tvmc_mobilenet.compiler.build import BuildConfig, build_model

#: The smallest network that still has every layer type: α=0.25 at 96×96 (~8 M Mult-Adds).
TINY = dict(alpha=0.25, resolution=96)


#: The emulated device is a large download built once: it stays in the user's real cache.
EMULATOR_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tvmc-mobilenet" / "emulated-aarch64"


def pytest_configure(config):
    """Keep the user's tuning databases out of the tests: a private cache directory per run."""
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="tvmc-mobilenet-test-cache-")


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


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts_connections(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def wait_until_listening(port: int, process=None, timeout: float = 60.0, host: str = "127.0.0.1") -> None:
    """Bounded wait until a server a test started accepts connections (and has not exited)."""
    deadline = time.time() + timeout
    while not accepts_connections(host, port):
        assert process is None or process.poll() is None, f"the server (pid {process.pid}) exited before listening on {host}:{port}"
        assert time.time() < deadline, f"nothing listened on {host}:{port} within {timeout:g} s"
        time.sleep(0.2)


@functools.cache
def has_aarch64_cross_compiler() -> bool:
    return shutil.which("aarch64-linux-gnu-g++") is not None


requires_aarch64_cc = pytest.mark.skipif(
    not has_aarch64_cross_compiler(),
    reason="aarch64-linux-gnu-g++ not installed (apt-get install g++-aarch64-linux-gnu)",
)


requires_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA toolkit) is not installed")


@functools.cache
def has_cuda11_nvrtc() -> bool:
    from tvmc_mobilenet.targets.nvrtc import cuda11_nvrtc

    return cuda11_nvrtc() is not None


requires_nvrtc11 = pytest.mark.skipif(
    not has_cuda11_nvrtc(), reason="CUDA 11.8's NVRTC wheels are not installed (pip install 'tvmc-mobilenet[cuda11]')"
)


@functools.cache
def has_cuda_gpu() -> bool:
    from tvmc_mobilenet.targets.registry import local_cuda_arch

    return local_cuda_arch() is not None


requires_cuda_gpu = pytest.mark.skipif(not has_cuda_gpu(), reason="no NVIDIA GPU (or CUDA driver) on this machine")


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory) -> Path:
    """A verified host artifact of the tiny network (built once per test session)."""
    out = tmp_path_factory.mktemp("artifacts") / "tiny.tar"
    build_model(BuildConfig(**TINY, output=out))
    return out


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    """A private copy of the tiny artifact that a test may damage."""
    copy = tmp_path / "copy.tar"
    shutil.copyfile(tiny_artifact, copy)
    return copy
