"""What this machine has for building and running: versions of the stack and the toolchains."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
from enum import Enum
from functools import lru_cache
from typing import Any

from tvmc_mobilenet.errors import BadInputError, TargetError

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


def nvcc_architectures() -> tuple[str, ...]:
    """The real architectures this machine's nvcc compiles for (``nvcc --list-gpu-code``)."""
    nvcc = shutil.which("nvcc")
    return () if nvcc is None else _nvcc_architectures(nvcc)


@lru_cache(maxsize=4)
def _nvcc_architectures(nvcc: str) -> tuple[str, ...]:
    try:
        proc = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("sm_"))


class CudaCompiler(str, Enum):
    """What compiles a CUDA target's kernels: this machine's nvcc (a fatbin: SASS + PTX), or CUDA
    11.8's NVRTC from PyPI (a cubin) for the architectures that nvcc has dropped."""

    NVCC = "nvcc"
    NVRTC_11 = "nvrtc"

    @property
    def label(self) -> str:
        return "nvcc" if self is CudaCompiler.NVCC else "NVRTC 11.8"


def cuda_compiler_for(arch: str, requested: CudaCompiler | None = None) -> CudaCompiler:
    """The compiler for ``arch``: the ``requested`` one, else nvcc when it targets ``arch``, else
    CUDA 11.8's NVRTC when that is installed and targets it (so also when nvcc is missing); a
    :class:`TargetError` saying what to install or choose when none does."""
    from tvmc_mobilenet.targets.nvrtc import INSTALL_HINT, cuda11_nvrtc

    arch = arch.strip()
    number, _suffix = parse_arch(arch)
    has_nvcc, nvcc_archs = shutil.which("nvcc") is not None, nvcc_architectures()
    nvcc_fits = has_nvcc and (not nvcc_archs or f"sm_{number}" in nvcc_archs)  # nvcc takes sm_90a where it lists sm_90
    if nvcc_fits and requested in (None, CudaCompiler.NVCC):
        return CudaCompiler.NVCC
    nvrtc = cuda11_nvrtc()  # loaded only when nvcc will not do
    nvrtc_archs = nvrtc.architectures() if nvrtc is not None else ()
    nvrtc_fits = arch in nvrtc_archs  # sm_35 … sm_90, no "a" variants
    if requested is CudaCompiler.NVCC:
        if not has_nvcc:
            raise TargetError("--cuda-compiler nvcc: nvcc is not on PATH; install the CUDA toolkit (nvcc)")
        instead = "; use --cuda-compiler nvrtc" if nvrtc_fits else ""
        raise TargetError(f"this nvcc cannot compile for {arch} (it supports {', '.join(nvcc_archs)}){instead}")
    if nvrtc_fits:
        return CudaCompiler.NVRTC_11
    if requested is CudaCompiler.NVRTC_11:
        if nvrtc is None:
            raise TargetError(f"--cuda-compiler nvrtc needs CUDA 11.8's NVRTC, which is not installed: {INSTALL_HINT}")
        raise TargetError(f"CUDA 11.8's NVRTC cannot compile for {arch} (it targets {_span(nvrtc_archs)}, no 'a' variants); use nvcc")
    nvrtc_could = nvrtc is None and 35 <= number <= 90 and not _suffix
    if not has_nvcc:
        if nvrtc is not None:
            raise TargetError(f"CUDA 11.8's NVRTC does not target {arch} and nvcc is not on PATH; install the CUDA toolkit (nvcc)")
        also = f", or CUDA 11.8's NVRTC (sm_35 to sm_90): {INSTALL_HINT}" if nvrtc_could else ""
        raise TargetError(f"CUDA targets compile their kernels with nvcc, which is not on PATH; install the CUDA toolkit (nvcc){also}")
    if nvrtc_could:
        raise TargetError(
            f"this nvcc cannot compile for {arch} (it supports {', '.join(nvcc_archs)}); "
            f"for older GPUs (sm_35 to sm_90) install CUDA 11.8's NVRTC: {INSTALL_HINT}"
        )
    spans = f"nvcc supports {_span(nvcc_archs)}" + (f", CUDA 11.8's NVRTC {_span(nvrtc_archs)}" if nvrtc is not None else "")
    raise TargetError(f"no compiler here targets {arch}: {spans}")


def _span(archs: tuple[str, ...]) -> str:
    numbers = sorted(parse_arch(a)[0] for a in archs)
    return f"sm_{numbers[0]} to sm_{numbers[-1]}" if numbers else "nothing"


def parse_cuda_compiler(value: str | None) -> CudaCompiler | None:
    """``"nvcc"``/``"nvrtc"`` (``--cuda-compiler``) → :class:`CudaCompiler`; None stays None."""
    if value is None:
        return None
    try:
        return CudaCompiler(value)
    except ValueError:
        choices = ", ".join(c.value for c in CudaCompiler)
        raise BadInputError(f"--cuda-compiler must be one of {choices}, got {value!r}") from None


def nvcc_release() -> str | None:
    """``"13.0"`` from ``nvcc --version``, or None without nvcc."""
    line = tool_version("nvcc")
    match = re.search(r"release (\d+\.\d+)", line or "")
    return match.group(1) if match else None


def nvrtc11_version() -> str | None:
    from tvmc_mobilenet.targets.nvrtc import cuda11_nvrtc

    nvrtc = cuda11_nvrtc()
    return None if nvrtc is None else nvrtc.version()


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
        "nvrtc 11 (extra cuda11)": nvrtc11_version(),
    }
