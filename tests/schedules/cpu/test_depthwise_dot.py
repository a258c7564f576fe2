"""int8 depthwise convolutions on a dot product's column form (schedules/cpu/depthwise_dot.py):
it takes the 4-row kernels the quantizer makes, computes them exactly, keeps its input patch off
the workspace pool, and calls vpdpbusd (x86) or sdot (the Pi 5's Cortex-A76, on the codes less
128)."""

import re

import numpy as np
import pytest
import tvm
from tvm import relax

from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule
from tvmc_mobilenet.compiler.quantize import _depthwise_on_codes_less_128
from tvmc_mobilenet.schedules.cpu.conv_dot import AVX_VNNI, SDOT, VNNI
from tvmc_mobilenet.schedules.cpu.depthwise_dot import MAX_PATCH_BYTES, DepthwiseDot, column_dot_input, column_dot_lanes, max_pixels
from tvmc_mobilenet.schedules.nhwc import find_conv_nhwc
from tvmc_mobilenet.targets.registry import resolve_target

from tests.schedules.kernels import HOST, RASP4B, conv_kernel_of, design_space_samples

ZNVER4 = resolve_target('{"kind": "llvm", "mcpu": "znver4", "num-cores": 2}').tvm_target()
ALDERLAKE = resolve_target('{"kind": "llvm", "mcpu": "alderlake", "num-cores": 2}').tvm_target()
RASP5 = resolve_target("rasp5").tvm_target()


class Int8Depthwise:
    """An int8 3×3 depthwise layer as the quantized graph writes it for a column dot product: a
    fourth kernel row of zeros, one more row of bottom padding, and a requantizing epilogue."""

    def __init__(self, channels: int, size: int, stride: int, pads: tuple[int, int, int, int] = (1, 1, 1, 1), seed: int = 0):
        rng = np.random.default_rng(seed)
        self.stride, self.pads = stride, pads
        self.x = rng.integers(0, 256, (1, size, size, channels), dtype=np.uint8)
        self.w = rng.integers(-127, 128, (3, 3, 1, channels), dtype=np.int8)
        self.bias = rng.integers(-3000, 3000, channels, dtype=np.int32)
        self.scale = rng.uniform(0.002, 0.02, channels).astype(np.float32)

    def relax_module(self, codes_less_128: bool = False) -> tvm.IRModule:
        """The layer as the quantized graph writes it; with ``codes_less_128`` as for Arm's
        ``sdot`` (int8 codes less 128, 128 · Σw added to the bias: the same sums)."""
        top, left, bottom, right = self.pads
        w4 = np.concatenate([self.w, np.zeros_like(self.w[:1])])
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType(self.x.shape, "uint8"))
        with bb.function("main", [x]):
            with bb.dataflow():
                if codes_less_128:
                    padding = (top, left, bottom + 1, right)
                    acc = bb.emit_te(_depthwise_on_codes_less_128, x, relax.const(w4), self.stride, padding, primfunc_name_hint="conv2d")
                    bias = self.bias + 128 * self.w.astype(np.int32).sum(axis=(0, 1, 2))
                else:
                    acc = relax.op.nn.conv2d(x, relax.const(w4), strides=self.stride, padding=(top, left, bottom + 1, right),
                                             groups=self.x.shape[3], data_layout="NHWC", kernel_layout="HWIO",
                                             out_dtype="int32")  # fmt: skip
                    bias = self.bias
                v = relax.op.astype(relax.op.add(acc, relax.const(bias.astype(np.int32))), "float32")
                v = relax.op.multiply(v, relax.const(self.scale))
                out = bb.emit_output(relax.op.astype(relax.op.clip(relax.op.round(v), 0, 255), "uint8"))
            bb.emit_func_output(out)
        return bb.get()

    def reference(self) -> np.ndarray:
        top, left, bottom, right = self.pads
        xp = np.pad(self.x.astype(np.int64), ((0, 0), (top, bottom), (left, right), (0, 0)))
        s = self.stride
        oh, ow = (xp.shape[1] - 3) // s + 1, (xp.shape[2] - 3) // s + 1
        acc = sum(xp[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s, :] * self.w[i, j, 0] for i in range(3) for j in range(3))
        return np.clip(np.rint((acc + self.bias).astype(np.float32) * self.scale), 0, 255).astype(np.uint8)


SHAPES = [
    # (channels, size, stride, pads)
    pytest.param(32, 28, 1, (1, 1, 1, 1), id="alpha1-first-block-32ch"),
    pytest.param(64, 28, 2, (1, 1, 1, 1), id="alpha1-stride2"),
    pytest.param(16, 14, 1, (1, 1, 1, 1), id="alpha0.5-16ch"),
    pytest.param(128, 14, 2, (0, 0, 1, 1), id="tensorflow-same-padding-stride2"),
    pytest.param(512, 7, 1, (1, 1, 1, 1), id="7x7-map"),
    pytest.param(64, 1, 1, (1, 1, 1, 1), id="1x1-map"),
]


@pytest.mark.parametrize("channels, size, stride, pads", SHAPES)
def test_the_column_dot_product_computes_the_layer_exactly(channels, size, stride, pads):
    if not VNNI.available(HOST):
        pytest.skip("this CPU has no AVX-512 VNNI to run the vpdpbusd kernels on")
    layer = Int8Depthwise(channels, size, stride, pads)
    fused = legalize_and_fuse(layer.relax_module(), HOST)
    _, kernel = conv_kernel_of(fused)
    sch = DepthwiseDot(VNNI).apply(kernel, HOST, False)
    assert sch is not None, "the column dot product did not take the 4-row int8 depthwise kernel"
    vm = relax.VirtualMachine(tvm.compile(schedule(fused, HOST), target=HOST, relax_pipeline=lower(HOST)), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(layer.x)).numpy(), layer.reference())


@pytest.mark.parametrize("stride", [1, 2])
def test_tiles_call_vpdpbusd_and_allocate_nothing_per_tile(stride):
    """The kernel's inner loop is the column dot product, and its input patch stays on the stack
    (where LLVM keeps it in registers): a patch over TVM's stack limit would come from the
    workspace pool at every tile."""
    layer = Int8Depthwise(64, 56, stride)
    kernel = conv_kernel_of(legalize_and_fuse(layer.relax_module(), ZNVER4))[1]
    sch = DepthwiseDot(VNNI).apply(kernel, ZNVER4, False)
    func = sch.mod["main"].with_attr("global_symbol", "main")
    llvm_ir = tvm.tirx.build(tvm.IRModule({"main": func}), target=ZNVER4).inspect_source("ll")
    (tile_loop,) = re.findall(r"define [^\n]*@__tvm_parallel_lambda[^\n]*\{\n.*?\n\}\n", llvm_ir, flags=re.S)
    assert "llvm.x86.avx512.vpdpbusd.512" in tile_loop
    assert "TVMBackendAllocWorkspace" not in tile_loop


@pytest.mark.parametrize("stride, lanes, expected", [(1, 16, 8), (2, 16, 7), (2, 8, 8), (1, 64, 1)])
def test_tiles_keep_the_patch_under_the_stack_limit(stride, lanes, expected):
    pixels = max_pixels(stride, lanes)
    assert pixels == expected
    assert pixels == 1 or 4 * ((pixels - 1) * stride + 3) * lanes <= MAX_PATCH_BYTES


def test_which_targets_get_four_row_kernels():
    """AVX-512 VNNI (16 lanes) and AVX-VNNI (8) have the column form on uint8 codes; Arm's sdot
    (the Pi 5's Cortex-A76) on int8 codes, 16 channels in four instructions; the Cortex-A72 has
    no dot product at all."""
    assert (column_dot_lanes(ZNVER4), column_dot_input(ZNVER4)) == (16, "uint8")
    assert column_dot_lanes(ALDERLAKE) == AVX_VNNI.lanes == 8
    assert (column_dot_lanes(RASP5), column_dot_input(RASP5)) == (16, "int8")
    assert column_dot_lanes(RASP4B) is None and column_dot_input(RASP4B) == "uint8"
    assert column_dot_lanes(None) is None


@pytest.mark.parametrize("stride", [1, 2])
def test_the_pi_5_takes_sdot_on_the_codes_less_128(stride):
    """On the Cortex-A76 the layer on int8 codes less 128 is the column form: 4 ``sdot`` per
    column and output vector of 16 channels, no widening multiply-add, the patch off the
    workspace pool; the uint8 layer is not (sdot multiplies int8 by int8). Compiled, not run (its
    numerics run on the emulated Pi 5: tests/devices/test_emulated.py)."""
    layer = Int8Depthwise(64, 56, stride)
    uint8_kernel = conv_kernel_of(legalize_and_fuse(layer.relax_module(), RASP5))[1]
    assert DepthwiseDot(SDOT).apply(uint8_kernel, RASP5, False) is None
    kernel = conv_kernel_of(legalize_and_fuse(layer.relax_module(codes_less_128=True), RASP5))[1]
    sch = DepthwiseDot(SDOT).apply(kernel, RASP5, False)
    assert sch is not None, "the column sdot did not take the int8 4-row depthwise kernel"
    func = sch.mod["main"].with_attr("global_symbol", "main")
    built = tvm.tirx.build(tvm.IRModule({"main": func}), target=RASP5)
    (tile_loop,) = re.findall(r"define [^\n]*@__tvm_parallel_lambda[^\n]*\{\n.*?\n\}\n", built.inspect_source("ll"), flags=re.S)
    assert "TVMBackendAllocWorkspace" not in tile_loop
    assembly = built.inspect_source("asm")
    pixels = 8 if stride == 1 else 7  # outputs per tile: the largest divisor of the row ≤ max_pixels(stride, 16)
    assert max_pixels(stride, 16) >= pixels
    assert len(re.findall(r"\tsdot\t", assembly)) >= 4 * 3 * pixels  # one tile, unrolled
    assert not re.search(r"\t[su]mlal2?\t", assembly)


def test_the_column_sdot_is_exact_on_this_host_through_the_widening_schedule():
    """The int8-codes layer gives the uint8 layer's output exactly (here through the widening
    schedule: this CPU has no sdot)."""
    layer = Int8Depthwise(32, 14, 1, seed=3)
    scheduled = schedule(legalize_and_fuse(layer.relax_module(codes_less_128=True), HOST), HOST)
    vm = relax.VirtualMachine(tvm.compile(scheduled, target=HOST, relax_pipeline=lower(HOST)), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(layer.x)).numpy(), layer.reference())


def test_three_row_kernels_and_float_kernels_are_left_to_the_other_rules():
    layer = Int8Depthwise(32, 14, 1)
    three_rows = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(layer.x.shape, "uint8"))
    with three_rows.function("main", [x]):
        with three_rows.dataflow():
            acc = relax.op.nn.conv2d(x, relax.const(layer.w), padding=1, groups=32, data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32")
            out = three_rows.emit_output(acc)
        three_rows.emit_func_output(out)
    kernel = conv_kernel_of(legalize_and_fuse(three_rows.get(), ZNVER4))[1]
    assert find_conv_nhwc(tvm.s_tir.Schedule(kernel)) is not None
    assert DepthwiseDot(VNNI).apply(kernel, ZNVER4, False) is None


def test_avx_vnni_gets_the_256_bit_column_dot_product():
    """A CPU with AVX-VNNI and no AVX-512 (Alder Lake) takes the 8-lane form: compiled, not run
    (this host may lack the instruction), its kernel calls the VEX-encoded vpdpbusd on ymm."""
    layer = Int8Depthwise(24, 14, 1)  # α 0.75's 24 channels: three 8-lane vectors
    kernel = conv_kernel_of(legalize_and_fuse(layer.relax_module(), ALDERLAKE))[1]
    assert DepthwiseDot(VNNI).apply(kernel, ALDERLAKE, False) is None  # no AVX-512 there
    sch = DepthwiseDot(AVX_VNNI).apply(kernel, ALDERLAKE, False)
    assert sch is not None
    assembly = tvm.tirx.build(tvm.IRModule({"main": sch.mod["main"].with_attr("global_symbol", "main")}), target=ALDERLAKE).inspect_source("asm")
    assert re.search(r"\{vex\}\s+vpdpbusd\s+%ymm", assembly)


def test_the_pi_5_design_space_samples_compile():
    """Tuning for the Pi 5 searches the column sdot's tiles: sampled schedules of its design
    space pass MetaSchedule's postprocessors and build for the Cortex-A76."""
    kernel = conv_kernel_of(legalize_and_fuse(Int8Depthwise(64, 56, 1).relax_module(codes_less_128=True), RASP5))[1]
    passed, rejected, trace = design_space_samples(kernel, RASP5, count=6)
    assert len(passed) == 6 and rejected == 0
    assert "tvmc_mobilenet_depthwise_16x4_sdot" in str(trace)
    func = passed[-1].mod["main"].with_attr("global_symbol", "main")
    assembly = tvm.tirx.build(tvm.IRModule({"main": func}), target=RASP5).inspect_source("asm")
    assert "\tsdot\t" in assembly
