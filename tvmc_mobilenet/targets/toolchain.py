"""What this machine has for building and running: versions of the stack and the toolchains."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
from functools import lru_cache
from typing import Any

from tvmc_mobilenet.errors import TargetError

#: Compilers the targets use, by the name a user would look for.
TOOLS = {
    "gcc": "g++",
    "aarch64 cross compiler": "aarch64-linux-gnu-g++",
    "nvcc": "nvcc",
    "qemu-aarch64": "qemu-aarch64",
}


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def tool_version(command: str, timeout: float = 10.0) -> str | None:
    """The version line of ``command --version``, or None when it is not installed."""
    path = shutil.which(command)
    if path is None:
        return None
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return "installed (version unknown)"
    lines = [line.strip() for line in (proc.stdout or proc.stderr).splitlines() if line.strip()]
    release = [line for line in lines if "release" in line]  # nvcc: "Cuda compilation tools, release …"
    return (release or lines or ["installed (version unknown)"])[0]


_CUDA_ARCH = re.compile(r"^sm_(\d+)([a-z]?)$")


def parse_arch(arch: str) -> tuple[int, str]:
    """``"sm_90a"`` → ``(90, "a")``; a clear error for anything else."""
    match = _CUDA_ARCH.match(arch.strip())
    if match is None:
        raise TargetError(f"CUDA architecture {arch!r} is not of the form sm_XX (e.g. sm_87, sm_90)")
    return int(match.group(1)), match.group(2)


@lru_cache(maxsize=1)
def nvcc_architectures() -> tuple[str, ...]:
    """The real architectures this machine's nvcc compiles for (``nvcc --list-gpu-code``)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return ()
    try:
        proc = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("sm_"))


def require_nvcc_for(arch: str) -> None:
    """Raise unless nvcc is installed and compiles for ``arch``."""
    parse_arch(arch)
    if shutil.which("nvcc") is None:
        raise TargetError(
            "CUDA targets compile their kernels with nvcc, which is not on PATH; install the CUDA toolkit (nvcc) and try again"
        )
    supported = nvcc_architectures()
    number, _suffix = parse_arch(arch)
    if supported and f"sm_{number}" not in supported:
        raise TargetError(
            f"this nvcc cannot compile for {arch} (it supports {', '.join(supported)}); "
            "use a CUDA toolkit that still supports it (CUDA 12 for sm_72 and older)"
        )


def llvm_version() -> str | None:
    try:
        from tvm.target import codegen

        return f"{codegen.llvm_version_major()} (system CPU {codegen.llvm_get_system_cpu()})"
    except Exception:  # TVM built without LLVM, or not importable
        return None


def environment_report() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "tvmc_mobilenet": _dist_version("tvmc-mobilenet"),
        "apache-tvm": _dist_version("apache-tvm"),
        "apache-tvm-ffi": _dist_version("apache-tvm-ffi"),
        "torch": _dist_version("torch"),
        "onnx": _dist_version("onnx"),
        "onnxruntime": _dist_version("onnxruntime"),
        "llvm": llvm_version(),
        **{name: tool_version(cmd) for name, cmd in TOOLS.items()},
    }
