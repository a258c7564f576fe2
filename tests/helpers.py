"""What tests share: the tiny network, loopback ports and bounded waits, and the probes behind the
hardware markers (``cuda``, ``nvcc``, ``nvrtc11``, ``aarch64_cc``, ``emulated``).

A test that needs a tool or device says so with its marker; ``conftest.py`` skips it, with the
reason below, where the probe finds nothing. Import from here (``from tests.helpers import …``),
never from ``conftest``.
"""

from __future__ import annotations

import functools
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tvmc_mobilenet.files import cache_dir

#: The smallest network that still has every layer type: α=0.25 at 96×96 (~8 M Mult-Adds).
TINY = dict(alpha=0.25, resolution=96)


def _emulator_dir() -> Path:
    # Read at import, before conftest points XDG_CACHE_HOME at a private directory for the run:
    # the emulated device is a large download built once, so it stays in the user's real cache.
    return cache_dir("emulated-aarch64")


EMULATOR_DIR = _emulator_dir()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts_connections(host: str, port: int) -> bool:
    """Whether a server listens there (a socket connected to itself does not count)."""
    from tvmc_mobilenet.devices.serve import accepts_connections as listens

    return listens(host, port)


def wait_until_listening(port: int, process=None, timeout: float = 60.0, host: str = "127.0.0.1") -> None:
    """Bounded wait until a server a test started accepts connections (and has not exited)."""
    deadline = time.time() + timeout
    while not accepts_connections(host, port):
        assert process is None or process.poll() is None, f"the server (pid {process.pid}) exited before listening on {host}:{port}"
        assert time.time() < deadline, f"nothing listened on {host}:{port} within {timeout:g} s"
        time.sleep(0.2)


def start_local_rpc_server(port: int):
    """TVM's stock RPC server on loopback (in its own session, so that ``stop`` ends it and its
    workers by PID); wait for it with :func:`wait_until_listening`."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@functools.cache
def has_aarch64_cross_compiler() -> bool:
    return shutil.which("aarch64-linux-gnu-g++") is not None


@functools.cache
def has_nvcc() -> bool:
    return shutil.which("nvcc") is not None


@functools.cache
def has_cuda11_nvrtc() -> bool:
    from tvmc_mobilenet.targets.nvrtc import cuda11_nvrtc

    return cuda11_nvrtc() is not None


@functools.cache
def has_cuda_gpu() -> bool:
    from tvmc_mobilenet.targets.registry import local_cuda_arch

    return local_cuda_arch() is not None


@functools.cache
def emulated_device_missing() -> str | None:
    """Why the emulated board cannot run here, or None."""
    from tvmc_mobilenet.devices.emulated import missing_tools

    missing = missing_tools() + ([] if has_aarch64_cross_compiler() else ["aarch64-linux-gnu-g++ (g++-aarch64-linux-gnu)"])
    return f"the emulated device needs {', '.join(missing)}" if missing else None


def _absent(probe: Callable[[], bool], reason: str) -> Callable[[], str | None]:
    return lambda: None if probe() else reason


#: Hardware markers: marker name → a probe returning why the test cannot run here (None: it can).
HARDWARE_MARKERS: dict[str, Callable[[], str | None]] = {
    "cuda": _absent(has_cuda_gpu, "no NVIDIA GPU (or CUDA driver) on this machine"),
    "nvcc": _absent(has_nvcc, "nvcc (the CUDA toolkit) is not installed"),
    "nvrtc11": _absent(has_cuda11_nvrtc, "CUDA 11.8's NVRTC wheels are not installed (pip install 'tvmc-mobilenet[cuda11]')"),
    "aarch64_cc": _absent(has_aarch64_cross_compiler, "aarch64-linux-gnu-g++ not installed (apt-get install g++-aarch64-linux-gnu)"),
    "emulated": emulated_device_missing,
}
