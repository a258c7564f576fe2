"""GPU code in CUDA artifacts: nvcc compiles the kernels at export, the library carries a fatbin
(SASS for the architecture + PTX) instead of CUDA source; for the Jetson Xavier (sm_72, dropped by
CUDA 13) CUDA 11.8's NVRTC compiles them into a cubin. Compile-only here; runs where a GPU is."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import has_cuda_gpu
from tvmc_mobilenet.options import ModelOptions, TargetOptions
from tvmc_mobilenet.build import BuildConfig, build_model
from tvmc_mobilenet.compiler.cuda_binary import (
    BLOB_SYMBOL,
    CompiledCudaPacker,
    GpuImage,
    ModuleBlob,
    c_array_bytes,
    compile_kernels,
    cubin_image,
    cuda_payload_parts,
    fatbin_images,
    find_cubins,
    find_fatbins,
)
from tvmc_mobilenet.errors import ArtifactError, CudaCompileError
from tvmc_mobilenet.runtime.artifact import open_artifact
from tvmc_mobilenet.runtime.executor import load_local
from tvmc_mobilenet.targets.registry import resolve_target
from tvmc_mobilenet.targets.toolchain import nvcc_architectures

ELF_MACHINE = {62: "x86_64", 183: "aarch64"}


requires_no_nvcc_sm72 = pytest.mark.skipif("sm_72" in nvcc_architectures(), reason="this nvcc (CUDA ≤ 12) still compiles sm_72 itself")


def cuobjdump() -> str | None:
    """cuobjdump from the CUDA toolkit or the nvidia-cuda-cuobjdump wheel (test extra)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        import nvidia.cu13

        candidate = Path(list(nvidia.cu13.__path__)[0]) / "bin" / "cuobjdump"
        return str(candidate) if candidate.exists() else None
    except ImportError:
        return None


def small_cuda_module(target):
    """matmul + ReLU through our CUDA pipeline (DLight's GPU rules): a tiny VM executable."""
    import tvm
    from tvm import relax
    from tvm.script import relax as R

    from tvmc_mobilenet.compiler.cuda_binary import keep_cuda_source
    from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule

    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((4, 64), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, relax.const(np.ones((64, 32), "float32"))))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
        bb.emit_func_output(out)
    scheduled = schedule(legalize_and_fuse(bb.get(), target), target)
    with keep_cuda_source(target):
        return tvm.compile(scheduled, target=target, relax_pipeline=lower(target))


def library_images(library: bytes) -> list[GpuImage]:
    """The GPU code embedded in a library: one fatbin (nvcc) or one cubin (NVRTC), never both."""
    fatbins, cubins = find_fatbins(library), find_cubins(library)
    assert len(fatbins) + len(cubins) == 1, f"{len(fatbins)} fatbins and {len(cubins)} cubins in the library"
    return fatbin_images(fatbins[0]) if fatbins else [cubin_image(cubins[0])]


def cuobjdump_listing(tool: str, library: bytes, tmp_path: Path) -> str:
    """NVIDIA's own reading of the GPU code embedded in a library."""
    fatbins, cubins = find_fatbins(library), find_cubins(library)
    code = tmp_path / ("kernels.fatbin" if fatbins else "kernels.cubin")
    code.write_bytes((fatbins or cubins)[0])
    return subprocess.run([tool, "--list-elf", "--list-ptx", str(code)], capture_output=True, text=True, timeout=60).stdout


@pytest.mark.nvcc
def test_export_replaces_cuda_source_by_a_fatbin(tmp_path):
    target = resolve_target("h100").tvm_target()
    executable = small_cuda_module(target)
    from tvm.runtime import _ffi_api

    # What TVM alone would embed: the CUDA source, to be compiled when the library is loaded.
    _, blob, _ = c_array_bytes(_ffi_api.ModulePackImportsToC(executable.mod, False, ""))
    parsed = ModuleBlob.parse(blob)
    assert parsed.serialize() == blob  # our reading of the layout is exact
    kinds = [kind for kind, _ in parsed.modules]
    assert kinds == [b"relax.VMExecutable", b"_lib", b"cuda"]
    fmt, _table, code = cuda_payload_parts(parsed.modules[2][1])
    assert fmt == "cuda" and b"__global__" in code

    packer = CompiledCudaPacker(target)
    lib = tmp_path / "lib.so"
    executable.export_library(str(lib), fpack_imports=packer)
    assert [str(i) for i in packer.images] == ["compute_90", "sm_90"]
    library = lib.read_bytes()
    assert b"__global__" not in library  # no source left to JIT on the device
    assert BLOB_SYMBOL.encode() in library
    assert library_images(library) == packer.images


def test_blob_damage_is_an_error_not_a_broken_library():
    blob = ModuleBlob([0, 1], [], [(b"cuda", b"\x00" * 12)]).serialize()
    with pytest.raises(CudaCompileError, match="unexpected end|unrecognised CUDA module payload"):
        cuda_payload_parts(ModuleBlob.parse(blob).modules[0][1])
    with pytest.raises(CudaCompileError, match="size field"):
        ModuleBlob.parse(blob[:-1])
    with pytest.raises(CudaCompileError, match="bad magic"):
        fatbin_images(b"\x00" * 32)
    with pytest.raises(CudaCompileError, match="not a CUDA cubin"):
        cubin_image(b"\x7fELF" + b"\x00" * 60)
    assert find_cubins(b"\x7fELF" + b"\x00" * 100) == []  # offset 0: the library's own header
    header = bytearray(64)
    header[:5], header[18:20] = b"\x7fELF\x02", struct.pack("<H", 190)
    assert find_cubins(b"xx" + bytes(header)) == []  # a CUDA ELF header with no section table


@pytest.mark.nvcc
def test_nvcc_errors_are_one_line():
    with pytest.raises(CudaCompileError, match=r"nvcc could not compile the kernels for sm_87: .*error") as info:
        compile_kernels('extern "C" __global__ void k() { undefined_thing(); }', resolve_target("jetson-orin-nano").tvm_target())
    assert "\n" not in str(info.value)


@pytest.mark.nvrtc11
def test_nvrtc_errors_are_one_line():
    from tvmc_mobilenet.targets.toolchain import CudaCompiler

    source, xavier = 'extern "C" __global__ void k() { undefined_thing(); }', resolve_target("jetson-xavier").tvm_target()
    with pytest.raises(CudaCompileError, match=r"NVRTC 11.8 could not compile the kernels for sm_72: .*undefined_thing") as info:
        compile_kernels(source, xavier, CudaCompiler.NVRTC_11)
    assert "\n" not in str(info.value)


def artifact_library(path: Path) -> bytes:
    with tarfile.open(path) as tar:
        return tar.extractfile("model.so").read()


NVCC_CODE = {"format": "fatbin", "compiler": re.compile(r"nvcc \d+\.\d+")}
NVRTC_CODE = {"format": "cubin", "compiler": re.compile(r"NVRTC 11\.8")}


@pytest.mark.parametrize(
    "target, batch, arch, machine, code, cuda_compiler",
    [
        pytest.param("jetson-orin-nano", 1, 87, "aarch64", NVCC_CODE, None, marks=[pytest.mark.nvcc, pytest.mark.aarch64_cc]),
        pytest.param("h100", 64, 90, "x86_64", NVCC_CODE, None, marks=pytest.mark.nvcc),
        # The default for sm_72 where nvcc (CUDA 13) has dropped it.
        pytest.param(
            "jetson-xavier", 2, 72, "aarch64", NVRTC_CODE, None, marks=[pytest.mark.nvrtc11, pytest.mark.aarch64_cc, requires_no_nvcc_sm72]
        ),
        # An Orin on JetPack 5 (CUDA 11.4) takes a CUDA 11.8 cubin rather than CUDA 13 code.
        pytest.param("jetson-agx-orin", 1, 87, "aarch64", NVRTC_CODE, "nvrtc", marks=[pytest.mark.nvrtc11, pytest.mark.aarch64_cc]),
    ],
)
def test_mobilenet_artifact_carries_gpu_code_for_its_architecture(tmp_path, target, batch, arch, machine, code, cuda_compiler):
    config = BuildConfig(
        model=ModelOptions(alpha=0.25, resolution=64, batch=batch),
        target=TargetOptions(name=target, cuda_compiler=cuda_compiler),
        output=tmp_path / "m.tar",
    )
    result = build_model(config)
    manifest = result.manifest
    assert manifest["target"]["device"] == "cuda" and manifest["target"]["tvm"]["arch"] == f"sm_{arch}"
    assert manifest["input"]["shape"] == [batch, 3, 64, 64]
    gpu_code = manifest["library"]["gpu_code"]
    assert gpu_code["format"] == code["format"] and code["compiler"].fullmatch(gpu_code["compiler"]), gpu_code
    images = [GpuImage("ptx", arch), GpuImage("sass", arch)] if code["format"] == "fatbin" else [GpuImage("sass", arch)]
    assert gpu_code["images"] == [str(image) for image in images]
    if not result.verification["status"] == "passed":
        assert re.search(r"do not run on this machine|no NVIDIA GPU", result.verification["reason"])

    if not has_cuda_gpu():  # run/bench refuse it here with what to do instead
        message = r"cannot run on this machine; run it on the device" if machine == "aarch64" else r"this machine has none"
        with pytest.raises(ArtifactError, match=message):
            load_local(open_artifact(result.artifact_path))

    library = artifact_library(result.artifact_path)
    assert ELF_MACHINE[struct.unpack_from("<H", library, 18)[0]] == machine  # the host side: the board's CPU
    assert b"__global__" not in library
    assert library_images(library) == images
    tool = cuobjdump()
    if tool is not None:  # NVIDIA's own reading of the embedded fatbin or cubin
        listing = cuobjdump_listing(tool, library, tmp_path)
        assert f"sm_{arch}.cubin" in listing, listing
        assert (f"sm_{arch}.ptx" in listing) == (code["format"] == "fatbin"), listing


@pytest.mark.cuda
@pytest.mark.nvcc
def test_cuda_build_runs_and_verifies_on_the_local_gpu(tmp_path):
    result = build_model(
        BuildConfig(model=ModelOptions(alpha=0.25, resolution=64), target=TargetOptions(name="cuda"), output=tmp_path / "gpu.tar")
    )
    assert result.verification["status"] == "passed"


@pytest.mark.aarch64_cc
@pytest.mark.parametrize(
    "target, images",
    [
        pytest.param("jetson-orin-nano", [GpuImage("ptx", 87), GpuImage("sass", 87)], marks=pytest.mark.nvcc),
        pytest.param("jetson-xavier", [GpuImage("sass", 72)], marks=pytest.mark.nvrtc11),
    ],
)
def test_tuning_candidates_for_a_gpu_carry_compiled_code(target, images):
    cuda_compiler = "nvrtc" if target == "jetson-xavier" else None  # the Xavier's route, whatever nvcc is here
    """The tuning builder exports CUDA candidates like artifacts: compiled, no source."""
    import tvm

    from tests.schedules.kernels import Layer, conv_kernel_of
    from tvmc_mobilenet.tuning.measure import build_and_export
    from tvmc_mobilenet.compiler.passes import schedule

    tvm_target = resolve_target(target).tvm_target()
    name, kernel = conv_kernel_of(schedule(Layer(1, 16, 32, 14, 1, 1, 1).fused(tvm_target), tvm_target))
    mod = tvm.IRModule({"main": kernel.with_attr("global_symbol", "main")})
    path = build_and_export(mod, tvm_target, "aarch64-linux-gnu-g++", cuda_compiler)
    library = Path(path).read_bytes()
    assert b"__global__" not in library
    assert library_images(library) == images


@pytest.mark.cuda
@pytest.mark.nvrtc11
def test_cuda11_nvrtc_cubin_runs_and_verifies_on_the_local_gpu(tmp_path):
    """The Xavier's route (a CUDA 11.8 cubin, ``fmt="cubin"``) loaded and run by TVM's runtime, on
    whatever GPU this machine has (NVRTC 11.8 targets sm_35 to sm_90)."""
    from tvmc_mobilenet.targets.nvrtc import cuda11_nvrtc
    from tvmc_mobilenet.targets.registry import local_cuda_arch

    arch = local_cuda_arch()
    if arch not in cuda11_nvrtc().architectures():
        pytest.skip(f"NVRTC 11.8 does not target this GPU ({arch})")
    result = build_model(
        BuildConfig(
            model=ModelOptions(alpha=0.25, resolution=64),
            target=TargetOptions(name="cuda", cuda_compiler="nvrtc"),
            output=tmp_path / "gpu.tar",
        )
    )
    assert result.manifest["library"]["gpu_code"]["format"] == "cubin"
    assert result.verification["status"] == "passed"


@pytest.mark.skipif(has_cuda_gpu(), reason="checks the refusal on a machine without a GPU")
def test_tuning_for_a_gpu_needs_one_or_its_rpc_server():
    from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model
    from tvmc_mobilenet.errors import TargetError

    with pytest.raises(TargetError, match=r"measures kernels on an NVIDIA GPU and this machine has none"):
        tune_model(TuneConfig(model=ModelOptions(alpha=0.25, resolution=64), target=TargetOptions(name="h100"), trials=4))
    with pytest.raises(TargetError, match=r"measured on the device itself: give --rpc-tracker .* --rpc-key jetson-orin-nano"):
        tune_model(TuneConfig(model=ModelOptions(alpha=0.25, resolution=64), target=TargetOptions(name="jetson-orin-nano"), trials=4))
