"""Our CUDA pointwise and depthwise schedules: they claim the kernels, bind every loop to the GPU,
pass TVM's GPU code checks, and compile with nvcc; the design spaces sample valid schedules.
Numerics need a GPU (marked ``cuda``, skipped without one)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.schedules.kernels import Layer, conv_kernel_of, cuda_source, design_space_samples
from tvmc_mobilenet.compiler.cuda_binary import compile_kernels
from tvmc_mobilenet.compiler.passes import schedule
from tvmc_mobilenet.schedules import design_space_of
from tvmc_mobilenet.schedules.cuda.depthwise import default_gpu_depthwise_tiles
from tvmc_mobilenet.schedules.cuda.pointwise import default_gpu_pointwise_tiles
from tvmc_mobilenet.schedules.nhwc import ConvNhwc
from tvmc_mobilenet.targets.registry import resolve_target
from tvmc_mobilenet.targets.toolchain import CudaCompiler

JETSON = resolve_target("jetson-orin-nano").tvm_target()  # sm_87
H100 = resolve_target("h100").tvm_target()  # sm_90
XAVIER = resolve_target("jetson-xavier").tvm_target()  # sm_72: CUDA 11.8's NVRTC

# (n, c_in, c_out, size, kernel, stride, groups): MobileNet layers at α = 1 and 0.25, channel
# counts that are not powers of two, a batch of 2, a 7×7 and a 1×1 map.
POINTWISE = [
    (1, 64, 128, 56, 1, 1, 1),
    (1, 8, 16, 32, 1, 1, 1),
    (1, 13, 24, 14, 1, 1, 1),
    (2, 48, 61, 7, 1, 1, 1),
    (1, 256, 256, 1, 1, 1, 1),
]
DEPTHWISE = [
    (1, 32, 32, 112, 3, 1, 32),
    (1, 64, 64, 56, 3, 2, 64),
    (1, 8, 8, 16, 3, 2, 8),
    (2, 24, 24, 14, 3, 1, 24),
    (1, 61, 61, 7, 3, 1, 61),
]
GPU_LIMITS = {
    "max_shared_memory_per_block": 49152,
    "max_threads_per_block": 1024,
    "max_thread_x": 1024,
    "max_thread_y": 1024,
    "max_thread_z": 64,
    "max_local_memory_per_block": 1 << 31,
    "max_vector_bytes": 16,
}


def scheduled_kernel(layer: Layer, target):
    return conv_kernel_of(schedule(layer.fused(target), target))[1]


@pytest.mark.parametrize("shape", POINTWISE + DEPTHWISE, ids=str)
def test_default_schedule_is_ours_and_valid_gpu_code(shape):
    from tvm import s_tir

    layer = Layer(*shape)
    kernel = layer.conv_kernel(JETSON)
    expected = "mobilenet_pointwise" if shape[4] == 1 else "mobilenet_depthwise"
    assert design_space_of(kernel) == expected
    scheduled = scheduled_kernel(layer, JETSON)
    script = scheduled.script()
    assert 'thread="blockIdx.x"' in script and 'thread="threadIdx.x"' in script
    assert "_local" in script  # accumulated in registers
    if expected == "mobilenet_pointwise":
        assert 'scope="shared"' in script  # input and weight slabs staged in shared memory
    assert "T.max(" in script  # ReLU fused into the write-back
    assert s_tir.analysis.verify_gpu_code(scheduled, GPU_LIMITS)


def test_default_tiles_fit_the_gpu():
    for shape in POINTWISE + DEPTHWISE:
        n, c_in, c_out, size, kernel, stride, groups = shape
        out = (size + 2 * (kernel // 2) - kernel) // stride + 1
        conv = ConvNhwc(n, out, out, c_out, kernel, kernel, c_in // groups, c_in)
        if kernel == 1:
            tiles = default_gpu_pointwise_tiles(conv, JETSON)
            assert 1 <= tiles.threads <= 256
            assert out % tiles.row_threads == 0 and c_out % (tiles.channel_threads * tiles.channel_inner) == 0
        else:
            tiles = default_gpu_depthwise_tiles(conv, JETSON)
            assert tiles.channel_threads * tiles.pixel_threads <= 256
            assert c_out % tiles.channel_threads == 0 and out % (tiles.pixel_threads * tiles.pixels_per_thread) == 0
    # Channels along threads, so that loads are coalesced: 32 channels → 32 threads on channels.
    assert default_gpu_depthwise_tiles(ConvNhwc(1, 112, 112, 32, 3, 3, 1, 32), JETSON).channel_threads == 32


@pytest.mark.parametrize(
    "target, images",
    [
        pytest.param(JETSON, ["compute_87", "sm_87"], marks=pytest.mark.nvcc, id="sm_87"),
        pytest.param(H100, ["compute_90", "sm_90"], marks=pytest.mark.nvcc, id="sm_90"),
        pytest.param(XAVIER, ["sm_72"], marks=pytest.mark.nvrtc11, id="sm_72"),
    ],
)
def test_default_schedules_compile(target, images):
    compiler = CudaCompiler.NVRTC_11 if target is XAVIER else CudaCompiler.NVCC
    for shape in (POINTWISE[0], POINTWISE[3], DEPTHWISE[1], DEPTHWISE[4]):
        source = cuda_source(scheduled_kernel(Layer(*shape), target), target)
        assert "__shared__" in source or shape[4] == 3
        assert [str(i) for i in compile_kernels(source, target, compiler).images] == images


@pytest.mark.parametrize("shape", [POINTWISE[0], POINTWISE[2], DEPTHWISE[0], DEPTHWISE[2]], ids=str)
def test_design_space_samples_pass_metaschedule_gpu_checks(shape):
    passed, rejected, trace = design_space_samples(Layer(*shape).conv_kernel(H100), H100, count=12)
    samplings = [str(inst.kind.name) for inst in trace.insts if inst.kind.name.startswith("Sample")]
    assert samplings.count("SamplePerfectTile") == (6 if shape[4] == 1 else 3)  # our decisions, sampled
    assert len(passed) >= 10, f"{rejected} of 12 samples rejected"
    for sch in passed:
        assert 'thread="threadIdx.x"' in sch.mod["main"].script()


@pytest.mark.nvcc
def test_design_space_samples_compile_with_nvcc():
    for shape in (POINTWISE[1], DEPTHWISE[3]):
        passed, _, _ = design_space_samples(Layer(*shape).conv_kernel(JETSON), JETSON, count=2, seed=7)
        for sch in passed:
            compile_kernels(cuda_source(sch.mod["main"], JETSON), JETSON)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", POINTWISE + DEPTHWISE, ids=str)
def test_numerics_on_the_gpu(shape, tmp_path):
    """Built as ``build`` does (kernels compiled by nvcc into the library), run on the local GPU."""
    import tvm
    from tvm import relax

    from tvmc_mobilenet.compiler.cuda_binary import CompiledCudaPacker, keep_cuda_source
    from tvmc_mobilenet.compiler.passes import lower

    layer = Layer(*shape)
    target = resolve_target("cuda").tvm_target()
    with keep_cuda_source(target):
        executable = tvm.compile(schedule(layer.fused(target), target), target, relax_pipeline=lower(target))
    library = tmp_path / "layer.so"
    executable.export_library(str(library), fpack_imports=CompiledCudaPacker(target))
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cuda())
    out = vm["main"](tvm.runtime.tensor(layer.x, tvm.cuda())).numpy()
    np.testing.assert_allclose(out, layer.reference(), rtol=1e-4, atol=1e-4)
