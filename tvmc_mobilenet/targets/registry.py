"""The target registry: the one place that knows devices.

A target is data: a short name mapped to the TVM target (a tag or a JSON dict), the compiler that
links its library, the RPC key its boards register under, its thread count and how it is
measured. Adding a board is adding one :class:`TargetSpec` to :data:`TARGETS`.

Anything that is not a registry name is tried as a TVM tag (``raspberry-pi/4b-aarch64``) or a
JSON target dict (``{"kind": "llvm", "mcpu": "znver4"}``) and passed to TVM as is.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tvmc_mobilenet.errors import TargetError, message_line
from tvmc_mobilenet.targets.toolchain import CudaCompiler, cuda_compiler_for, parse_arch

#: Placeholder for the host's TVM target, which is detected (see :mod:`.host`).
HOST_TARGET = "host"


class Device(str, Enum):
    CPU = "cpu"
    CUDA = "cuda"


class Measure(str, Enum):
    """How a target's modules are run and timed."""

    LOCAL = "local"  # on this machine
    RPC = "rpc"  # on a board reached through a TVM RPC tracker or server


@dataclass(frozen=True)
class TargetSpec:
    name: str
    description: str
    #: A TVM tag, a JSON-able dict, or :data:`HOST_TARGET`.
    tvm_target: str | dict[str, Any]
    device: Device = Device.CPU
    #: The C++ compiler that links the exported library; None: the host's default (g++).
    cross_compiler: str | None = None
    #: The Debian package that provides ``cross_compiler``.
    cross_compiler_package: str | None = None
    rpc_key: str | None = None
    threads: int | None = None
    measure: Measure = Measure.LOCAL
    aliases: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "tvm_target": self.tvm_target,
            "device": self.device.value,
            "cross_compiler": self.cross_compiler,
            "cross_compiler_package": self.cross_compiler_package,
            "rpc_key": self.rpc_key,
            "threads": self.threads,
            "measure": self.measure.value,
            "aliases": list(self.aliases),
        }


_AARCH64 = dict(
    cross_compiler="aarch64-linux-gnu-g++",
    cross_compiler_package="g++-aarch64-linux-gnu",
    measure=Measure.RPC,
)
_JETSON = dict(
    device=Device.CUDA,
    measure=Measure.RPC,
    cross_compiler="aarch64-linux-gnu-g++",
    cross_compiler_package="g++-aarch64-linux-gnu",
)
_NVIDIA_GPU = {
    "kind": "cuda",
    "max_num_threads": 1024,
    "max_threads_per_block": 1024,  # MetaSchedule's GPU rules need it
    "thread_warp_size": 32,
    "max_shared_memory_per_block": 49152,
    "registers_per_block": 65536,
}


def _jetson(arch: str, cpu: str, cores: int) -> dict[str, Any]:
    """A Jetson: its GPU, and its aarch64 CPU as the host (TVM's tags give Orin the wrong CPU)."""
    host = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": cpu, "mattr": ["+neon"], "num-cores": cores}
    return {**_NVIDIA_GPU, "arch": arch, "host": host}


TARGETS: tuple[TargetSpec, ...] = (
    TargetSpec(
        name="host",
        description="This machine's CPU, features detected by LLVM",
        tvm_target=HOST_TARGET,
    ),
    TargetSpec(
        name="rasp4b",
        description="Raspberry Pi 4B, 64-bit OS: Cortex-A72, NEON, 4 cores",
        tvm_target="raspberry-pi/4b-aarch64",
        rpc_key="rasp4b",
        threads=4,
        **_AARCH64,
    ),
    TargetSpec(
        name="rasp5",
        description="Raspberry Pi 5, 64-bit OS: Cortex-A76, NEON with dot product (sdot/udot) and fp16, 4 cores",
        tvm_target={
            "kind": "llvm",
            "mtriple": "aarch64-linux-gnu",
            "mcpu": "cortex-a76",
            "mattr": ["+neon", "+dotprod", "+fullfp16"],
            "num-cores": 4,
        },
        rpc_key="rasp5",
        threads=4,
        **_AARCH64,
    ),
    TargetSpec(
        name="rasp3b",
        description="Raspberry Pi 3B, 64-bit OS: Cortex-A53, NEON, 4 cores",
        tvm_target={
            "kind": "llvm",
            "mtriple": "aarch64-linux-gnu",
            "mcpu": "cortex-a53",
            "mattr": ["+neon"],
            "num-cores": 4,
        },
        rpc_key="rasp3b",
        threads=4,
        **_AARCH64,
    ),
    TargetSpec(
        name="rk3399",
        description="Rockchip RK3399 (e.g. Firefly, Rock Pi 4): 2× Cortex-A72 + 4× Cortex-A53, NEON",
        tvm_target={
            "kind": "llvm",
            "mtriple": "aarch64-linux-gnu",
            "mcpu": "cortex-a72",
            "mattr": ["+neon"],
            "num-cores": 2,
        },
        rpc_key="rk3399",
        threads=2,
        **_AARCH64,
    ),
    TargetSpec(
        name="aarch64",
        description="Any 64-bit ARM Linux board: generic ARMv8-A with NEON",
        tvm_target={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
        rpc_key="aarch64",
        **_AARCH64,
    ),
    TargetSpec(
        name="jetson-orin-nano",
        description="NVIDIA Jetson Orin Nano: Ampere GPU sm_87, 6-core Cortex-A78AE host",
        tvm_target=_jetson("sm_87", "cortex-a78ae", 6),
        threads=6,
        rpc_key="jetson-orin-nano",
        **_JETSON,
    ),
    TargetSpec(
        name="jetson-agx-orin",
        description="NVIDIA Jetson AGX Orin: Ampere GPU sm_87, 12-core Cortex-A78AE host",
        tvm_target=_jetson("sm_87", "cortex-a78ae", 12),
        threads=12,
        rpc_key="jetson-agx-orin",
        **_JETSON,
    ),
    TargetSpec(
        name="jetson-xavier",
        description="NVIDIA Jetson AGX Xavier: Volta GPU sm_72, 8-core Carmel host (JetPack 5: CUDA 11.4)",
        tvm_target=_jetson("sm_72", "carmel", 8),
        threads=8,
        rpc_key="jetson-xavier",
        **_JETSON,
    ),
    TargetSpec(
        name="cuda",
        description="The local NVIDIA GPU (architecture detected, or given with --arch sm_XX)",
        tvm_target=_NVIDIA_GPU,  # no "arch": TVM would put sm_50 there when it finds no GPU
        device=Device.CUDA,
    ),
    TargetSpec(
        name="a100",
        description="NVIDIA A100 (sm_80)",
        tvm_target="nvidia/nvidia-a100",
        device=Device.CUDA,
    ),
    TargetSpec(
        name="h100",
        description="NVIDIA H100 / H200 (sm_90)",
        # TVM's tag says sm_90a, whose code runs on sm_90 only and carries no portable PTX; our
        # kernels use no sm_90a-only instruction.
        tvm_target={**_NVIDIA_GPU, "arch": "sm_90", "l2_cache_size_bytes": 52428800},
        device=Device.CUDA,
        aliases=("h200",),
    ),
)

_BY_NAME: dict[str, TargetSpec] = {}
for _spec in TARGETS:
    for _name in (_spec.name, *_spec.aliases):
        _BY_NAME[_name] = _spec


def registry_names() -> list[str]:
    return [spec.name for spec in TARGETS]


@dataclass(frozen=True)
class ResolvedTarget:
    """A target ready for TVM: the registry entry (or an ad-hoc one) and the TVM target as JSON."""

    spec: TargetSpec
    #: The TVM target as the JSON dict TVM itself prints (tags expanded).
    target_json: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def tvm_target(self):
        """The ``tvm.target.Target`` (imports TVM)."""
        import tvm

        return tvm.target.Target(self.target_json)

    @property
    def runs_here(self) -> bool:
        """Whether modules for this target can be run on this machine (for verification)."""
        if self.spec.measure is not Measure.LOCAL:
            return False
        if self.spec.device is Device.CUDA:
            return local_cuda_arch() is not None and _is_native(self.target_json.get("host", {"kind": "llvm"}))
        return self.spec.tvm_target == HOST_TARGET or _is_native(self.target_json)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "tvm": self.target_json}


def _is_native(target_json: dict[str, Any]) -> bool:
    import platform

    triple = str(target_json.get("mtriple", ""))
    if target_json.get("kind") != "llvm":
        return False
    return not triple or triple.startswith(platform.machine())


def lookup(name: str) -> TargetSpec | None:
    return _BY_NAME.get(name)


def resolve_target(name_or_target: str, cuda_arch: str | None = None) -> ResolvedTarget:
    """A registry name, a TVM tag, or a JSON target dict → :class:`ResolvedTarget`.

    ``cuda_arch`` (``sm_XX``) sets the GPU architecture of a CUDA target; without it a CUDA target
    that names none (``cuda``) takes the local GPU's, when there is one. Raises
    :class:`TargetError` with the known names when nothing matches.
    """
    text = name_or_target.strip()
    spec = lookup(text)
    if spec is None:
        spec = _adhoc_spec(text)
    if cuda_arch is not None and spec.device is not Device.CUDA:
        raise TargetError(f"--arch {cuda_arch} sets a GPU architecture, but {spec.name!r} is a {spec.device.value} target")
    if spec.device is Device.CUDA and (cuda_arch is not None or _lacks_arch(spec.tvm_target)):
        arch = cuda_arch.strip() if cuda_arch is not None else local_cuda_arch()
        if arch is None:  # left for require_buildable to refuse, with what to do
            return ResolvedTarget(spec, dict(spec.tvm_target) if isinstance(spec.tvm_target, dict) else {"kind": "cuda"})
        parse_arch(arch)
        base = dict(spec.tvm_target) if isinstance(spec.tvm_target, dict) else _target_json(spec.tvm_target)
        return ResolvedTarget(spec, _target_json({**base, "arch": arch}))
    return ResolvedTarget(spec, _target_json(spec.tvm_target))


def _lacks_arch(tvm_target: str | dict[str, Any]) -> bool:
    return isinstance(tvm_target, dict) and not tvm_target.get("arch")


def local_cuda_arch() -> str | None:
    """The architecture (``sm_XX``) of this machine's first NVIDIA GPU, or None without one."""
    import tvm

    try:
        device = tvm.cuda(0)
        return "sm_" + device.compute_version.replace(".", "") if device.exist else None
    except Exception:  # TVM without its CUDA runtime, or no driver
        return None


def _adhoc_spec(text: str) -> TargetSpec:
    """A TVM tag or JSON dict given on the command line, wrapped as a registry-like entry."""
    if text.startswith("{"):
        try:
            target = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TargetError(f"target {text!r} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(target, dict) or "kind" not in target:
            raise TargetError(f'a JSON target must be an object with a "kind" key, got {text!r}')
    else:
        target = text
    target_json = _target_json(target, original=text)
    kind = target_json.get("kind")
    device = Device.CUDA if kind == "cuda" else Device.CPU
    cpu_side = target_json.get("host", {}) if device is Device.CUDA else target_json
    is_aarch64 = str(cpu_side.get("mtriple", "")).startswith("aarch64")
    return TargetSpec(
        name=text,
        description="TVM target given on the command line",
        tvm_target=target,
        device=device,
        cross_compiler="aarch64-linux-gnu-g++" if is_aarch64 else None,
        cross_compiler_package="g++-aarch64-linux-gnu" if is_aarch64 else None,
        measure=Measure.RPC if is_aarch64 or (device is Device.CPU and not _is_native(target_json)) else Measure.LOCAL,
    )


def _target_json(target: str | dict[str, Any], original: str | None = None) -> dict[str, Any]:
    if target == HOST_TARGET:
        from tvmc_mobilenet.targets.host import host_target_json

        return host_target_json()
    import tvm

    try:
        parsed = tvm.target.Target(target)
    except Exception as exc:  # TVM raises ValueError or its own errors for unknown tags/keys
        shown = original or (target if isinstance(target, str) else json.dumps(target))
        known = ", ".join(registry_names())
        raise TargetError(
            f"unknown target {shown!r}: not one of {known}, and TVM rejects it as a tag or JSON target "
            f"({message_line(exc)}); run 'tvmc-mobilenet targets' for the list"
        ) from None
    return json.loads(str(parsed))


def _host_linker() -> str | None:
    """The C++ compiler TVM's ``export_library`` links a host library with (``$CXX``, ``$CC``, else
    the first of g++, gcc, clang++… on PATH), or None."""
    from tvm.support.cc import get_cc

    return get_cc()


def require_buildable(resolved: ResolvedTarget, cuda_compiler: CudaCompiler | None = None) -> None:
    """Raise if this version cannot build for the target, or its toolchain (``cuda_compiler``
    when one is asked for) is missing here."""
    spec = resolved.spec
    if cuda_compiler is not None and spec.device is not Device.CUDA:
        raise TargetError(f"--cuda-compiler compiles GPU kernels, but {spec.name!r} is a {spec.device.value} target")
    if spec.device is Device.CUDA:
        arch = resolved.target_json.get("arch")
        if not arch:
            raise TargetError(
                f"target {spec.name!r} needs a GPU architecture and no NVIDIA GPU was found here to detect it; "
                "give one with --arch sm_XX (e.g. sm_87 for Jetson Orin, sm_90 for H100/H200)"
            )
        cuda_compiler_for(str(arch), cuda_compiler)
    if not spec.cross_compiler and _host_linker() is None:
        raise TargetError(
            f"target {spec.name!r} links its library with this machine's C++ compiler and none was found "
            "(g++, gcc, clang++ or $CXX); install one with: apt-get install g++"
        )
    if spec.cross_compiler and shutil.which(spec.cross_compiler) is None:
        raise TargetError(
            f"target {spec.name!r} needs the cross compiler {spec.cross_compiler}, which is not on PATH; "
            f"install it with: apt-get install {spec.cross_compiler_package}"
        )


def compilers_label(spec: TargetSpec) -> str:
    """What would compile and link this target's library here, for the ``targets`` table: e.g.
    ``nvcc + aarch64-linux-gnu-g++``, ``NVRTC 11.8 + g++``, ``nvcc (missing) + g++``."""
    linker = spec.cross_compiler or "g++"
    if spec.device is not Device.CUDA:
        return linker
    arch = resolve_target(spec.name).target_json.get("arch")
    if not arch:
        gpu = "nvcc"  # the local GPU's architecture: unknown without one
    else:
        try:
            gpu = cuda_compiler_for(str(arch)).label
        except TargetError:
            gpu = "nvcc (missing)"
    return f"{gpu} + {linker}"
