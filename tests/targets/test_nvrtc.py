"""CUDA 11.8's NVRTC through ctypes: it loads from the wheels, lists its architectures, compiles
CUDA C++ (with the CCCL headers TVM's kernels include under NVRTC) into a cubin, and reports a
compile error in one line."""

from __future__ import annotations

import pytest
from tvmc_mobilenet.compiler.cuda_binary import GpuImage, cubin_image
from tvmc_mobilenet.targets.nvrtc import NvrtcCompileError, cuda11_nvrtc

pytestmark = pytest.mark.nvrtc11

KERNEL = """
#include <cuda/std/cstdint>
extern "C" __global__ void scale(float* __restrict__ out, const float* __restrict__ in, cuda::std::int32_t n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 2.0f * in[i];
}
"""


def test_nvrtc_is_cuda_11_8_and_targets_volta():
    nvrtc = cuda11_nvrtc()
    assert nvrtc.version() == "11.8"
    archs = nvrtc.architectures()
    assert {"sm_53", "sm_70", "sm_72", "sm_87", "sm_90"} <= set(archs)
    assert "sm_100" not in archs


@pytest.mark.parametrize("arch", ["sm_72", "sm_53", "sm_87"])
def test_kernel_compiles_to_a_cubin_for_the_architecture(arch):
    cubin = cuda11_nvrtc().compile_cubin(KERNEL, arch)
    assert cubin_image(cubin) == GpuImage("sass", int(arch[3:]))
    assert b"scale" in cubin  # the kernel's symbol


def test_compiling_leaves_the_thread_locale_alone():
    """NVRTC 11.8 switches the calling thread to the "C" locale (``uselocale``); Python would then
    decode a subprocess's UTF-8 output as ASCII."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.uselocale.restype, libc.uselocale.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    before = libc.uselocale(None)
    cuda11_nvrtc().compile_cubin(KERNEL, "sm_72")
    assert libc.uselocale(None) == before


@pytest.mark.faults("bad_input")
def test_compile_errors_are_one_line():
    with pytest.raises(NvrtcCompileError, match=r"error: identifier \"undefined_thing\" is undefined") as info:
        cuda11_nvrtc().compile_cubin('extern "C" __global__ void k() { undefined_thing(); }', "sm_72")
    assert "\n" not in str(info.value)
