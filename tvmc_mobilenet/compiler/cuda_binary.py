"""Compiled GPU code in the artifact, so that a device needs no CUDA compiler to load it.

TVM 0.27 keeps the CUDA *source* of the kernels in the built module when the CUDA runtime is not
linked into the compiling process (no driver, as on a build machine) and compiles it when the
module is loaded (``CUDAModuleNode::JitCompileFromSource``, through NVRTC or nvcc on the device).
A Jetson or a server with only the TVM runtime cannot do that. So at export this module:

1. compiles the kernels' source for the target's architecture (the compiler is chosen by
   :func:`~tvmc_mobilenet.targets.toolchain.cuda_compiler_for`):

   - with nvcc, via TVM's own ``tvm.support.nvcc.compile_cuda``, into a fatbin holding SASS for
     the architecture and its PTX (which the driver can JIT for a newer GPU);
   - for the architectures nvcc has dropped (sm_72, the Jetson Xavier), with CUDA 11.8's NVRTC
     (:mod:`tvmc_mobilenet.targets.nvrtc`) into a cubin, which a CUDA 11 driver loads;

2. writes the library's packed import blob (``__tvm_ffi__library_bin``, what
   ``export_library`` embeds) with each CUDA module's payload turned from ``fmt="cuda"`` (source)
   into ``fmt="fatbin"`` or ``fmt="cubin"`` (compiled), which the runtime loads with
   ``cuModuleLoadData``.

The blob layout (TVM 0.27, ``ffi`` library module) and the CUDA module payload
(``Write(fmt) Write(fmap) Write(code)``, ``src/target/cuda/cuda_fallback_module.cc``) are parsed
strictly: anything unexpected raises instead of writing a library that would not load.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tvmc_mobilenet.errors import CudaCompileError
from tvmc_mobilenet.targets.toolchain import CudaCompiler, cuda_compiler_for, nvcc_release, parse_arch

if TYPE_CHECKING:
    import tvm

#: TVM's switch that keeps CUDA source in built modules (its "fallback" module).
FORCE_FALLBACK = "TVM_COMPILE_FORCE_FALLBACK"
#: The import blob's symbol; ``export_library`` prefixes it for system libraries.
BLOB_SYMBOL = "__tvm_ffi__library_bin"
_DSO_KEY = b"_lib"
_CUDA_KIND = b"cuda"
_FATBIN_MAGIC = 0xBA55ED50
_ELF_MAGIC = b"\x7fELF"
_EM_CUDA = 190


@contextlib.contextmanager
def keep_cuda_source(target: tvm.target.Target):
    """Make TVM keep the CUDA source in the module even where its CUDA runtime is linked (a GPU
    machine), instead of JIT-compiling it with the NVRTC of that CUDA: the export compiles it with
    the compiler the build chose (nvcc, or CUDA 11.8's NVRTC), the same way on every machine. No
    effect for other targets."""
    if target.kind.name != "cuda":
        yield
        return
    saved = os.environ.get(FORCE_FALLBACK)
    os.environ[FORCE_FALLBACK] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(FORCE_FALLBACK, None)
        else:
            os.environ[FORCE_FALLBACK] = saved


@dataclass(frozen=True)
class GpuImage:
    """One image in a fatbin: ``sass`` (machine code for one architecture) or ``ptx``."""

    kind: str
    arch: int

    def __str__(self) -> str:
        return f"sm_{self.arch}" if self.kind == "sass" else f"compute_{self.arch}"


def gencode_flags(arch: str) -> list[str]:
    """SASS for ``arch`` and its PTX, so that a newer GPU can JIT the kernels in its driver."""
    number, suffix = parse_arch(arch)
    virtual = f"compute_{number}{suffix}"
    return ["-gencode", f"arch={virtual},code=sm_{number}{suffix}", "-gencode", f"arch={virtual},code={virtual}"]


@dataclass(frozen=True)
class GpuBinary:
    """Kernels compiled for one architecture: a ``fatbin`` (nvcc) or a ``cubin`` (NVRTC)."""

    fmt: str
    data: bytes
    compiler: str

    @property
    def images(self) -> list[GpuImage]:
        return fatbin_images(self.data) if self.fmt == "fatbin" else [cubin_image(self.data)]


def compile_kernels(source: str, target: tvm.target.Target, compiler: CudaCompiler | None = None) -> GpuBinary:
    """CUDA source → compiled code for the target's ``arch``, by ``compiler`` (default: the one
    that targets it, see :func:`cuda_compiler_for`)."""
    arch = str(target.attrs["arch"])
    if cuda_compiler_for(arch, compiler) is CudaCompiler.NVRTC_11:
        return _compile_with_nvrtc11(source, arch)
    from tvm.support import nvcc

    try:
        with target:  # compile_cuda reads the compute version of the current target
            fatbin = bytes(nvcc.compile_cuda(source, target_format="fatbin", arch=gencode_flags(arch), options=["-w"], compiler="nvcc"))
    except RuntimeError as exc:
        errors = [line.strip() for line in str(exc).splitlines() if "error" in line.lower() and "Compilation error" not in line]
        raise CudaCompileError(f"nvcc could not compile the kernels for {arch}: {errors[0] if errors else 'see nvcc output'}") from None
    return GpuBinary("fatbin", fatbin, f"nvcc {nvcc_release() or '(version unknown)'}")


def _compile_with_nvrtc11(source: str, arch: str) -> GpuBinary:
    """A cubin (SASS only: an older driver cannot JIT CUDA 11.8's PTX, and a newer GPU has nvcc's
    own targets) from CUDA 11.8's NVRTC."""
    from tvmc_mobilenet.targets.nvrtc import NvrtcCompileError, cuda11_nvrtc

    nvrtc = cuda11_nvrtc()
    assert nvrtc is not None  # cuda_compiler_for chose it
    compiler = f"NVRTC {nvrtc.version()}"
    try:
        cubin = nvrtc.compile_cubin(source, arch)
    except NvrtcCompileError as exc:
        raise CudaCompileError(f"{compiler} could not compile the kernels for {arch}: {exc}") from None
    return GpuBinary("cubin", cubin, compiler)


def cubin_image(data: bytes) -> GpuImage:
    """The architecture of a cubin: a CUDA ELF (machine 190) whose flags carry the SM version
    (low byte, ELF ABI version 7 as CUDA 11 and 12 write it)."""
    if len(data) < 64 or data[:4] != _ELF_MAGIC or data[4] != 2 or struct.unpack_from("<H", data, 18)[0] != _EM_CUDA:
        raise CudaCompileError("not a CUDA cubin (no 64-bit CUDA ELF header)")
    if data[8] != 7:
        raise CudaCompileError(f"cubin with an unknown ELF ABI version ({data[8]})")
    return GpuImage("sass", struct.unpack_from("<I", data, 48)[0] & 0xFF)


def fatbin_images(data: bytes) -> list[GpuImage]:
    """The images of a fatbin (header: magic, version, header size, payload size; then per image:
    kind (1 PTX, 2 ELF), version, header size, payload size, …, architecture at byte 28)."""
    if len(data) < 16 or struct.unpack_from("<I", data, 0)[0] != _FATBIN_MAGIC:
        raise CudaCompileError("not a CUDA fatbin (bad magic number)")
    _version, header_size, payload_size = struct.unpack_from("<HHQ", data, 4)
    images, offset, end = [], header_size, header_size + payload_size
    if end > len(data):
        raise CudaCompileError("truncated CUDA fatbin")
    while offset < end:
        kind, _v, image_header, image_size = struct.unpack_from("<HHIQ", data, offset)
        arch = struct.unpack_from("<I", data, offset + 28)[0]
        images.append(GpuImage({1: "ptx", 2: "sass"}.get(kind, f"kind{kind}"), arch))
        offset += image_header + image_size
    return images


def find_fatbins(library: bytes) -> list[bytes]:
    """Every fatbin embedded in a file (e.g. an exported library), found by its magic number."""
    found, start = [], 0
    magic = struct.pack("<I", _FATBIN_MAGIC)
    while (start := library.find(magic, start)) >= 0:
        if start + 16 <= len(library):
            _version, header_size, payload_size = struct.unpack_from("<HHQ", library, start + 4)
            if header_size == 16 and start + 16 + payload_size <= len(library):
                found.append(library[start : start + 16 + payload_size])
                start += 16 + payload_size
                continue
        start += 4
    return found


def find_cubins(library: bytes) -> list[bytes]:
    """Every CUDA ELF (cubin) embedded in a file on its own (not inside a fatbin), found by its
    header; it ends where the last of its section headers, program headers and contents ends."""
    fatbin_spans, start = [], 0
    for fatbin in find_fatbins(library):  # found in order, without overlap
        start = library.index(fatbin, start)
        fatbin_spans.append(range(start, start + len(fatbin)))
        start += len(fatbin)
    found, start = [], 1  # offset 0 is the library's own ELF header
    while (start := library.find(_ELF_MAGIC, start)) >= 0:
        end = None if any(start in span for span in fatbin_spans) else _cuda_elf_end(library, start)
        if end is not None:
            found.append(library[start:end])
            start = end
        else:
            start += 4
    return found


def _cuda_elf_end(data: bytes, start: int) -> int | None:
    if start + 64 > len(data) or data[start + 4] != 2 or struct.unpack_from("<H", data, start + 18)[0] != _EM_CUDA:
        return None  # not a 64-bit CUDA ELF
    program_headers, section_headers = struct.unpack_from("<QQ", data, start + 32)
    ph_size, ph_count, sh_size, sh_count = struct.unpack_from("<HHHH", data, start + 54)
    if sh_size < 64:
        return None
    end = max(program_headers + ph_size * ph_count, section_headers + sh_size * sh_count)
    if start + section_headers + sh_size * sh_count > len(data):
        return None
    for index in range(sh_count):
        header = start + section_headers + index * sh_size
        kind, offset, size = struct.unpack_from("<I", data, header + 4)[0], *struct.unpack_from("<QQ", data, header + 24)
        if kind != 8:  # SHT_NOBITS occupies no bytes in the file
            end = max(end, offset + size)
    return start + end if start + end <= len(data) else None


# ---- the packed import blob ------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def u64(self) -> int:
        if self.offset + 8 > len(self.data):
            raise CudaCompileError("unexpected end of the module blob")
        (value,) = struct.unpack_from("<Q", self.data, self.offset)
        self.offset += 8
        return value

    def bytes(self) -> bytes:
        size = self.u64()
        if self.offset + size > len(self.data):
            raise CudaCompileError("unexpected end of the module blob")
        value = self.data[self.offset : self.offset + size]
        self.offset += size
        return value

    def done(self) -> bool:
        return self.offset == len(self.data)


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def _string(value: bytes) -> bytes:
    return _u64(len(value)) + value


@dataclass
class ModuleBlob:
    """The packed import tree: CSR rows/children, then (kind, payload) per module (``_lib``: the
    library itself, no payload)."""

    row_ptr: list[int]
    child_indices: list[int]
    modules: list[tuple[bytes, bytes | None]]

    @classmethod
    def parse(cls, blob: bytes) -> ModuleBlob:
        reader = _Reader(blob)
        if reader.u64() != len(blob) - 8:
            raise CudaCompileError("the module blob's size field does not match its length")
        row_ptr = [reader.u64() for _ in range(reader.u64())]
        child_indices = [reader.u64() for _ in range(reader.u64())]
        modules: list[tuple[bytes, bytes | None]] = []
        while not reader.done():
            kind = reader.bytes()
            modules.append((kind, None if kind == _DSO_KEY else reader.bytes()))
        if len(modules) != len(row_ptr) - 1:
            raise CudaCompileError(f"the module blob lists {len(modules)} modules for an import tree of {len(row_ptr) - 1}")
        return cls(row_ptr, child_indices, modules)

    def serialize(self) -> bytes:
        body = _u64(len(self.row_ptr)) + b"".join(map(_u64, self.row_ptr))
        body += _u64(len(self.child_indices)) + b"".join(map(_u64, self.child_indices))
        for kind, payload in self.modules:
            body += _string(kind) + (b"" if payload is None else _string(payload))
        return _u64(len(body)) + body


def cuda_payload_parts(payload: bytes) -> tuple[str, bytes, bytes]:
    """A CUDA module payload → (format, serialized function table, code)."""
    reader = _Reader(payload)
    fmt = reader.bytes().decode()
    # The function table is a serialized map of unknown length; the code is the last field, so
    # it is found from the end: its 8-byte length must account exactly for the rest.
    for code_start in range(len(payload) - 8, reader.offset - 1, -1):
        (size,) = struct.unpack_from("<Q", payload, code_start)
        if code_start + 8 + size == len(payload):
            candidate = payload[code_start + 8 :]
            if fmt != "cuda" or b"__global__" in candidate:
                return fmt, payload[reader.offset : code_start], candidate
    raise CudaCompileError(f"unrecognised CUDA module payload (format {fmt!r})")


def compile_cuda_modules(blob: bytes, target: tvm.target.Target, compiler: CudaCompiler | None = None) -> tuple[bytes, list[GpuBinary]]:
    """Replace every CUDA-source module in a packed blob by its compiled code.

    Returns the new blob and what was compiled (one binary per CUDA module).
    """
    parsed = ModuleBlob.parse(blob)
    binaries: list[GpuBinary] = []
    for index, (kind, payload) in enumerate(parsed.modules):
        if kind != _CUDA_KIND or payload is None:
            continue
        fmt, function_table, code = cuda_payload_parts(payload)
        if fmt != "cuda":
            continue  # already compiled (built where the CUDA runtime is linked)
        binary = compile_kernels(code.decode(), target, compiler)
        binaries.append(binary)
        parsed.modules[index] = (kind, _string(binary.fmt.encode()) + function_table + _string(binary.data))
    return parsed.serialize(), binaries


def c_array_bytes(c_source: str) -> tuple[str, bytes, str]:
    """``ModulePackImportsToC``'s output → (text before the array, its bytes, text after)."""
    start = c_source.index(BLOB_SYMBOL + "[")
    open_brace = c_source.index("{", start)
    close_brace = c_source.index("}", open_brace)
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{2})", c_source[open_brace:close_brace]))
    declaration = c_source[:open_brace]
    declaration = re.sub(re.escape(BLOB_SYMBOL) + r"\[\d+\]", BLOB_SYMBOL + "[{size}]", declaration)
    return declaration, data, c_source[close_brace:]


def c_array_source(declaration: str, data: bytes, tail: str) -> str:
    rows = (",".join(f"0x{b:02x}" for b in data[i : i + 20]) for i in range(0, len(data), 20))
    return declaration.replace("{size}", str(len(data))) + "{\n  " + ",\n  ".join(rows) + ",\n" + tail


class CompiledCudaPacker:
    """``fpack_imports`` for ``export_library``: packs the imports as TVM does (C source), with
    the CUDA modules compiled. After the export, :attr:`binaries` holds the GPU code written."""

    def __init__(self, target: tvm.target.Target, compiler: CudaCompiler | None = None) -> None:
        self.target = target
        self.compiler = compiler
        self.binaries: list[GpuBinary] = []

    @property
    def images(self) -> list[GpuImage]:
        return [image for binary in self.binaries for image in binary.images]

    def gpu_code(self) -> dict[str, object]:
        """What the manifest says of the library's GPU code."""
        return {
            "format": "+".join(sorted({b.fmt for b in self.binaries})),
            "compiler": "+".join(sorted({b.compiler for b in self.binaries})),
            "images": [str(image) for image in self.images],
        }

    def __call__(self, module, is_system_lib: bool, symbol_prefix: str, workspace_dir: str) -> str:
        from tvm.runtime import _ffi_api

        c_source = _ffi_api.ModulePackImportsToC(module, is_system_lib, symbol_prefix)
        declaration, blob, tail = c_array_bytes(c_source)
        new_blob, self.binaries = compile_cuda_modules(blob, self.target, self.compiler)
        path = Path(workspace_dir) / f"{symbol_prefix}devc.c"
        path.write_text(c_array_source(declaration, new_blob, tail))
        return str(path)
