"""NVRTC from CUDA 11.8: compiles kernels for GPUs that this machine's nvcc no longer targets.

CUDA 13's nvcc dropped Volta and older (sm_72: the Jetson AGX Xavier; sm_70: V100; sm_53: the
Jetson Nano). The Xavier's last JetPack (5.1) ships CUDA 11.4, so its kernels are best compiled by
a CUDA 11 compiler: under NVIDIA's minor-version compatibility a cubin built by CUDA 11.8 loads on
any CUDA 11 driver (PTX from 11.8 would not JIT on an 11.4 driver, so none is shipped).

NVIDIA publishes CUDA 11.8's NVRTC and its CCCL headers (``<cuda/std/cstdint>``, which TVM's
kernels include when compiled at run time) as PyPI wheels, so no toolkit is needed: install the
``cuda11`` extra (``pip install 'tvmc-mobilenet[cuda11]'``). The library is called through
ctypes rather than NVIDIA's ``cuda-bindings``, whose major version must match the CUDA the rest of
the environment uses (13 here) and of which one version can be installed at a time.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: The wheels of the ``cuda11`` extra, and the CUDA release they come from.
NVRTC_WHEEL = "nvidia-cuda-nvrtc-cu11"
CCCL_WHEEL = "nvidia-cuda-cccl-cu11"
CUDA_RELEASE = "11.8"
_LIBRARY = "libnvrtc.so.11.2"  # the soname of every CUDA 11.2+ NVRTC
INSTALL_HINT = "pip install 'tvmc-mobilenet[cuda11]'"


class NvrtcCompileError(Exception):
    """NVRTC rejected the source; the message is the first error line of its log."""


def _package_dir(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class Nvrtc:
    """CUDA 11's NVRTC, loaded from the ``nvidia-cuda-nvrtc-cu11`` wheel."""

    library: Path
    include_dir: Path

    def _lib(self) -> ctypes.CDLL:
        return _load(str(self.library))

    def version(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)))
        return f"{major.value}.{minor.value}"

    def architectures(self) -> tuple[str, ...]:
        """The real architectures it compiles for (``sm_35`` … ``sm_90``)."""
        lib = self._lib()
        count = ctypes.c_int()
        self._check(lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)))
        archs = (ctypes.c_int * count.value)()
        self._check(lib.nvrtcGetSupportedArchs(archs))
        return tuple(f"sm_{a}" for a in archs)

    def compile_cubin(self, source: str, arch: str, name: str = "kernels.cu") -> bytes:
        """CUDA C++ source → a cubin (SASS) for ``arch`` (``sm_72``)."""
        lib = self._lib()
        program = ctypes.c_void_p()
        self._check(lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None))
        try:
            options = [f"--gpu-architecture={arch}", f"-I{self.include_dir}", "--std=c++17", "-w"]
            argv = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
            with _thread_locale_kept():
                result = lib.nvrtcCompileProgram(program, len(options), argv)
            if result != 0:
                log = self._log(program)
                errors = [line.strip() for line in log.splitlines() if "error" in line.lower()]
                raise NvrtcCompileError(errors[0] if errors else self._error_string(result))
            size = ctypes.c_size_t()
            self._check(lib.nvrtcGetCUBINSize(program, ctypes.byref(size)))
            cubin = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetCUBIN(program, cubin))
            return cubin.raw
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(program))

    def _log(self, program: ctypes.c_void_p) -> str:
        size = ctypes.c_size_t()
        self._lib().nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(max(size.value, 1))
        self._lib().nvrtcGetProgramLog(program, log)
        return log.value.decode(errors="replace")

    def _error_string(self, result: int) -> str:
        return (self._lib().nvrtcGetErrorString(result) or b"NVRTC error").decode()

    def _check(self, result: int) -> None:
        if result != 0:
            raise NvrtcCompileError(f"NVRTC call failed: {self._error_string(result)}")


@contextlib.contextmanager
def _thread_locale_kept():
    """NVRTC 11.8's compile leaves the calling thread in the "C" locale (``uselocale``), after
    which Python decodes subprocess output as ASCII; put the thread's locale back."""
    libc = ctypes.CDLL(None)
    libc.uselocale.restype, libc.uselocale.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    saved = libc.uselocale(None)
    try:
        yield
    finally:
        libc.uselocale(saved)


@lru_cache(maxsize=4)
def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


@lru_cache(maxsize=1)
def cuda11_nvrtc() -> Nvrtc | None:
    """CUDA 11's NVRTC and its CCCL headers when both wheels are installed and load, else None."""
    try:  # the CUDA 12/13 wheels install into the same folders: ask for these two by name
        importlib.metadata.version(NVRTC_WHEEL), importlib.metadata.version(CCCL_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        return None
    nvrtc_dir, cccl_dir = _package_dir("nvidia.cuda_nvrtc"), _package_dir("nvidia.cuda_cccl")
    if nvrtc_dir is None or cccl_dir is None:
        return None
    library, include_dir = nvrtc_dir / "lib" / _LIBRARY, cccl_dir / "include"
    if not library.is_file() or not (include_dir / "cuda" / "std" / "cstdint").is_file():
        return None
    nvrtc = Nvrtc(library, include_dir)
    try:
        nvrtc.version()
    except (OSError, NvrtcCompileError):
        return None
    return nvrtc
