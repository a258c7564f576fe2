"""What this machine has for building and running: versions of the stack and the toolchains."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
from typing import Any

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
