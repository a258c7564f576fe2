"""The tensor intrinsics schedules and MetaSchedule's rules look up, registered without the 23 s
that importing ``tvm.s_tir.tensor_intrin`` costs."""

from __future__ import annotations

import os

#: Our name for the VNNI dot product: TVM 0.27's own (``dot_16x4_vnni``) passes int32 vectors
#: where its LLVM's ``llvm.x86.avx512.vpdpbusd.512`` takes ``<64 x i8>`` and fails to compile.
VNNI_INTRIN = "tvmc_mobilenet_dot_16x4_vnni"
#: Arm dotprod (``sdot``, int8 × int8 → int32, 4 lanes each adding 4 products): TVM's description
#: with an implementation written as one expression (see :func:`register_sdot_intrinsic`).
SDOT_INTRIN = "tvmc_mobilenet_dot_4x4_sdot"


#: AVX-VNNI (``vpdpbusd`` on 256-bit vectors, VEX-encoded: Alder Lake, Zen 5 without AVX-512):
#: 8 int32 lanes, each adding 4 uint8 × int8 products.
AVX_VNNI_INTRIN = "tvmc_mobilenet_dot_8x4_avxvnni"
#: ``vpdpbusd`` on one column of a depthwise window (schedules/cpu/depthwise_dot.py): each lane
#: adds the 4 kernel rows of its own channel, the input's 4 rows interleaved into its 4 bytes.
DEPTHWISE_VNNI_INTRIN = "tvmc_mobilenet_depthwise_16x4_vnni"
#: The same on AVX-VNNI's 256-bit vectors (8 lanes).
DEPTHWISE_AVX_VNNI_INTRIN = "tvmc_mobilenet_depthwise_8x4_avxvnni"
#: Arm's ``sdot`` on one column of a depthwise window: 16 channels in 4 instructions of 4 lanes,
#: int8 codes (the uint8 codes less 128, converted as the kernel copies its input patch;
#: compiler/quantize.py).
DEPTHWISE_SDOT_INTRIN = "tvmc_mobilenet_depthwise_16x4_sdot"
#: Plain AVX2: ``vpmaddwd`` on bytes widened to 16 bits, 8 int32 lanes each adding 2 products.
#: (``vpmaddubsw`` would take the bytes as they are, but saturates its 16-bit pair sums: 2 · 255 ·
#: 127 > 32767 for uint8 activations.)
AVX2_INTRIN = "tvmc_mobilenet_dot_8x2_avx2"


def register_schedule_intrinsics() -> None:
    """Every tensor intrinsic our schedules use: what a tuning database's records name, so call it
    before loading one."""
    register_cpu_tensor_intrinsics()
    register_vnni_intrinsic()
    register_sdot_intrinsic()
    register_avx2_intrinsics()
    register_depthwise_intrinsics()


def _registered(name: str) -> bool:
    from tvm.s_tir import TensorIntrin

    try:
        TensorIntrin.get(name)
        return True
    except Exception:  # not registered yet (TVM raises its own error type)
        return False


def _dot_desc(lanes: int, group: int):
    """``C[i] += A[k] · B[i, k]``: uint8 data, int8 weights, int32 accumulators."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (group,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (lanes, group), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:group], B[0:lanes, 0:group])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, group):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vi, vk])

    return desc


def _broadcast_dot_impl(lanes: int, data_dtype: str, llvm_intrinsic: str):
    """``C[i] += Σk A[k] · B[i, k]`` over 4-byte groups as one LLVM call: the pixel's 4 bytes
    broadcast to every lane, ``lanes`` int32 accumulators (x86 ``vpdpbusd``, Arm ``sdot``).

    One expression, no named steps: TVMScript would make each name a local buffer, which inside a
    parallel loop TVM allocates from its workspace pool at every tile."""
    from tvm.script import tirx as T

    acc, data, weights = f"int32x{lanes}", f"{data_dtype}x{4 * lanes}", f"int8x{4 * lanes}"

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), data_dtype, offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_intrinsic),
                C.vload([0], dtype=acc),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], f"{data_dtype}x4"), dtype="int32"), lanes), dtype=data),
                B.vload([0, 0], dtype=weights),
                dtype=acc,
            )

    return impl


def register_avx2_intrinsics() -> None:
    """Register :data:`AVX_VNNI_INTRIN` and :data:`AVX2_INTRIN`; again is a no-op."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if not _registered(AVX_VNNI_INTRIN):
        TensorIntrin.register(AVX_VNNI_INTRIN, _dot_desc(8, 4), _broadcast_dot_impl(8, "uint8", "llvm.x86.avx512.vpdpbusd.256"))

    if not _registered(AVX2_INTRIN):

        @T.prim_func(s_tir=True)
        def avx2(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (2,), "uint8", offset_factor=1)
            B = T.match_buffer(b, (8, 2), "int8", offset_factor=1)
            C = T.match_buffer(c, (8,), "int32", offset_factor=1)
            with T.sblock("root"):
                T.reads(C[0:8], A[0:2], B[0:8, 0:2])
                T.writes(C[0:8])
                C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                    # the pixel's two channels, widened to 16 bits, broadcast to every lane
                    T.reinterpret(T.broadcast(T.reinterpret(T.Cast("int16x2", A.vload([0], "uint8x2")), dtype="int32"), 8), dtype="int16x16"),
                    T.Cast("int16x16", B.vload([0, 0], dtype="int8x16")),
                    dtype="int32x8",
                )

        TensorIntrin.register(AVX2_INTRIN, _dot_desc(8, 2), avx2)


def _column_dot(lanes: int, llvm_intrinsic: str | None, data_dtype: str = "uint8"):
    """``C[i] += Σk A[k, i] · B[i, k]`` for k < 4: ``lanes`` channels of 4 input rows
    (``data_dtype``, each row contiguous, rows ``s0`` apart) times each channel's 4 kernel rows
    (int8, packed channel by channel), into ``lanes`` int32 accumulators.

    With ``llvm_intrinsic`` the implementation (one expression, as :func:`_broadcast_dot_impl`):
    the 4 row vectors interleaved by one shuffle so that lane ``i`` holds ``A[0..3, i]`` in its 4
    bytes, then one dot product (``vpdpbusd``, ``sdot``). Without it, the description."""
    from tvm.script import tirx as T

    # byte 4i + k of the shuffled vector is row k's channel i
    interleave = [k * lanes + i for i in range(lanes) for k in range(4)]
    row, weights, acc = f"{data_dtype}x{lanes}", f"int8x{4 * lanes}", f"int32x{lanes}"

    describe = llvm_intrinsic is None  # a Python constant: TVMScript takes one branch when parsing

    @T.prim_func(s_tir=True)
    def column_dot(a: T.handle, b: T.handle, c: T.handle) -> None:
        s0 = T.int32()
        A = T.match_buffer(a, (4, lanes), data_dtype, offset_factor=1, strides=[s0, 1])
        B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4, 0:lanes], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            if describe:
                for i, k in T.grid(lanes, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.Cast("int32", A[vk, vi]) * T.Cast("int32", B[vi, vk])
            else:
                C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(llvm_intrinsic),
                    C.vload([0], dtype=acc),
                    T.Shuffle([A.vload([0, 0], row), A.vload([1, 0], row), A.vload([2, 0], row), A.vload([3, 0], row)], interleave),
                    B.vload([0, 0], dtype=weights),
                    dtype=acc,
                )

    return column_dot


def _column_sdot(llvm_intrinsic: str):
    """:func:`_column_dot`'s implementation for 16 channels on Arm's 4-lane ``sdot``: the 4 rows
    of 16 int8 codes transposed by two rounds of zips (bytes, then byte pairs) into 4 vectors of
    4 channels × 4 rows, then one ``sdot`` per 4 channels with their 16 weight bytes."""
    from tvm.script import tirx as T

    # Masks over two concatenated 16-byte vectors x, y. zip_bytes: x0 y0 x1 y1 … (low halves: zip1,
    # high: zip2); on rows (0, 1) and (2, 3) a byte pair is one channel's 2 rows. zip_pairs: the
    # same on byte pairs, so 4 bytes are one channel's 4 rows: channels 0-3, 4-7 from the low
    # halves, 8-11, 12-15 from the high ones.
    zip_bytes = ([i // 2 + 16 * (i % 2) for i in range(16)], [8 + i // 2 + 16 * (i % 2) for i in range(16)])
    zip_pairs = (
        [2 * (i // 4) + i % 2 + 16 * ((i // 2) % 2) for i in range(16)],
        [8 + 2 * (i // 4) + i % 2 + 16 * ((i // 2) % 2) for i in range(16)],
    )

    @T.prim_func(s_tir=True)
    def column_sdot(a: T.handle, b: T.handle, c: T.handle) -> None:
        s0 = T.int32()
        A = T.match_buffer(a, (4, 16), "int8", offset_factor=1, strides=[s0, 1])
        B = T.match_buffer(b, (16, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4, 0:16], B[0:16, 0:4])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 16)] = T.Shuffle(
                [
                    T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id(llvm_intrinsic),
                        C.vload([4 * j], dtype="int32x4"),
                        T.Shuffle(
                            [
                                T.Shuffle([A.vload([0, 0], "int8x16"), A.vload([1, 0], "int8x16")], zip_bytes[j // 2]),
                                T.Shuffle([A.vload([2, 0], "int8x16"), A.vload([3, 0], "int8x16")], zip_bytes[j // 2]),
                            ],
                            zip_pairs[j % 2],
                        ),
                        B.vload([4 * j, 0], dtype="int8x16"),
                        dtype="int32x4",
                    )
                    for j in range(4)
                ],
                list(range(16)),
            )

    return column_sdot


def register_depthwise_intrinsics() -> None:
    """Register :data:`DEPTHWISE_VNNI_INTRIN`, :data:`DEPTHWISE_AVX_VNNI_INTRIN` and
    :data:`DEPTHWISE_SDOT_INTRIN`; again is a no-op."""
    from tvm.s_tir import TensorIntrin

    for name, lanes, llvm_intrinsic in (
        (DEPTHWISE_VNNI_INTRIN, 16, "llvm.x86.avx512.vpdpbusd.512"),
        (DEPTHWISE_AVX_VNNI_INTRIN, 8, "llvm.x86.avx512.vpdpbusd.256"),
    ):
        if not _registered(name):
            TensorIntrin.register(name, _column_dot(lanes, None), _column_dot(lanes, llvm_intrinsic))
    if not _registered(DEPTHWISE_SDOT_INTRIN):
        TensorIntrin.register(DEPTHWISE_SDOT_INTRIN, _column_dot(16, None, "int8"), _column_sdot("llvm.aarch64.neon.sdot.v4i32.v16i8"))


def register_vnni_intrinsic() -> None:
    """Register :data:`VNNI_INTRIN` (TVM's description, an implementation LLVM accepts); again is
    a no-op."""
    from tvm.s_tir import TensorIntrin

    register_cpu_tensor_intrinsics()  # TVM's x86 ones, without every other backend's (23 s)
    from tvm.s_tir.tensor_intrin.x86 import dot_product_16x4_u8i8i32_desc

    if _registered(VNNI_INTRIN):
        return

    TensorIntrin.register(VNNI_INTRIN, dot_product_16x4_u8i8i32_desc, _broadcast_dot_impl(16, "uint8", "llvm.x86.avx512.vpdpbusd.512"))


def register_sdot_intrinsic() -> None:
    """Register :data:`SDOT_INTRIN`; again is a no-op.

    TVM's own (``dot_4x4_i8i8s32_sdot``) names each step of its implementation (``vec_a = …``),
    and TVMScript makes every such name a local buffer: inside a parallel loop, six workspace
    allocations and frees per call of the tile (see :func:`_broadcast_dot_impl`; on VNNI the one
    64-byte pixel buffer cost 45 % of the 112×112×32 pointwise kernel).
    """
    from tvm.s_tir import TensorIntrin

    register_cpu_tensor_intrinsics()
    from tvm.s_tir.tensor_intrin.arm_cpu import get_dotprod_intrin

    if _registered(SDOT_INTRIN):
        return

    desc, _tvm_impl = get_dotprod_intrin("int8", "int32")
    TensorIntrin.register(SDOT_INTRIN, desc, _broadcast_dot_impl(4, "int8", "llvm.aarch64.neon.sdot.v4i32.v16i8"))


def register_tensor_intrinsics(target) -> None:
    """The tensor intrinsics MetaSchedule's rules for ``target`` look up: the CPU ones, and for a
    CUDA target also CUDA's (its tensor-core rule asks for the WMMA intrinsics)."""
    import importlib

    register_cpu_tensor_intrinsics()
    if target.kind.name == "cuda":
        importlib.import_module("tvm.s_tir.tensor_intrin.cuda")


def register_cpu_tensor_intrinsics() -> None:
    """Register the CPU tensor intrinsics without the other backends' (saves ~20 s per tune).

    MetaSchedule's ``TuneContext`` runs ``import tvm.s_tir.tensor_intrin``, whose package
    ``__init__`` registers every backend's intrinsics by parsing TVMScript: 23 s here, 17 s of it
    CUDA's. A CPU tune needs only the x86 and ARM ones (used by the int8 dot-product rules). This
    puts the package in ``sys.modules`` without running its ``__init__`` and imports those two
    submodules; the later ``import tvm.s_tir.tensor_intrin`` then finds it already imported. A
    process that has already imported the package is left as it is.
    """
    import importlib
    import sys
    import types

    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        import tvm.s_tir

        package = types.ModuleType(name, "CPU tensor intrinsics only (see tvmc_mobilenet.tuning.measure)")
        package.__path__ = [os.path.join(os.path.dirname(tvm.s_tir.__file__), "tensor_intrin")]
        package.__package__ = name
        sys.modules[name] = package
        tvm.s_tir.tensor_intrin = package
    for submodule in ("x86", "arm_cpu"):
        importlib.import_module(f"{name}.{submodule}")
