"""What a CPU target's vector unit offers a schedule: float32 lanes per register and registers."""

from __future__ import annotations

from dataclasses import dataclass

from tvm.target import Target


@dataclass(frozen=True)
class VectorUnit:
    """``lanes`` float32 values per vector register, ``registers`` architectural vector registers."""

    lanes: int
    registers: int

    def vector_width(self, channels: int) -> int:
        """Lanes to vectorise ``channels`` with: the full register when the count allows it, else
        the largest power of two (≥ 4) dividing it, else 1 (no vectorisation)."""
        width = self.lanes
        while width >= 4:
            if channels % width == 0:
                return width
            width //= 2
        return 1


def vector_lanes(target: Target, dtype_bits: int = 32) -> int:
    """float32 lanes of the target's widest vector register (NEON 4, AVX2 8, AVX-512 16)."""
    from tvm.target import codegen

    try:
        with target:
            width = int(codegen.llvm_get_vector_width(target))
    except Exception:  # target without LLVM vector info
        width = 128
    return max(1, width // dtype_bits)


def vector_unit(target: Target) -> VectorUnit:
    """AArch64 (NEON) and AVX-512 have 32 vector registers; SSE/AVX2 have 16."""
    lanes = vector_lanes(target)
    triple = str(target.attrs.get("mtriple", "") or "")
    registers = 32 if lanes >= 16 or triple.startswith("aarch64") else 16
    return VectorUnit(lanes=lanes, registers=registers)


def target_cores(target: Target) -> int:
    """Threads a kernel for ``target`` runs on (its ``num-cores``)."""
    return int(target.attrs.get("num-cores", 1) or 1)
