"""The tensor intrinsics schedules and MetaSchedule's rules look up, registered without the 23 s
that importing ``tvm.s_tir.tensor_intrin`` costs."""

from __future__ import annotations

import os

#: Our name for the VNNI dot product: TVM 0.27's own (``dot_16x4_vnni``) passes int32 vectors
#: where its LLVM's ``llvm.x86.avx512.vpdpbusd.512`` takes ``<64 x i8>`` and fails to compile.
VNNI_INTRIN = "tvmc_mobilenet_dot_16x4_vnni"
#: TVM's Arm dotprod intrinsic (``sdot``, int8 × int8 → int32, 4 lanes), registered by
#: :func:`register_cpu_tensor_intrinsics`.
SDOT_INTRIN = "dot_4x4_i8i8s32_sdot"


def register_schedule_intrinsics() -> None:
    """Every tensor intrinsic our schedules use: what a tuning database's records name, so call it
    before loading one."""
    register_vnni_intrinsic()


def register_vnni_intrinsic() -> None:
    """Register :data:`VNNI_INTRIN` (TVM's description, an implementation LLVM accepts); again is
    a no-op."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    register_cpu_tensor_intrinsics()  # TVM's x86 ones, without every other backend's (23 s)
    from tvm.s_tir.tensor_intrin.x86 import dot_product_16x4_u8i8i32_desc

    try:
        TensorIntrin.get(VNNI_INTRIN)
        return
    except Exception:  # not registered yet (TVM raises its own error type)
        pass

    @T.prim_func(s_tir=True)
    def vnni(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            pixel = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16), dtype="uint8x64")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                pixel,
                B.vload([0, 0], dtype="int8x64"),
                dtype="int32x16",
            )

    TensorIntrin.register(VNNI_INTRIN, dot_product_16x4_u8i8i32_desc, vnni)


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
