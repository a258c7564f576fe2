"""Load an artifact's library with the TVM runtime, run it, time it, check it.

Only ``tvm.runtime`` is used, so this works with ``TVM_USE_RUNTIME_LIB=1`` (the runtime library
alone, no compiler) and without torch.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvmc_mobilenet.errors import ArtifactError, BadInputError, VerificationError
from tvmc_mobilenet.runtime.arrays import readable_in_place
from tvmc_mobilenet.runtime.artifact import Artifact

#: DLPack's device type of host memory (``kDLCPU``).
DLPACK_CPU = 1

#: Verification tolerance: max |tvm - reference| ≤ RELATIVE_TOLERANCE × max |reference|.
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class TimingStats:
    """Latency of one batch in milliseconds over ``repeat`` samples of ``number`` runs each."""

    number: int
    repeat: int
    warmup: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    samples_ms: tuple[float, ...]

    @classmethod
    def from_seconds(cls, samples_s: list[float], number: int, warmup: int) -> TimingStats:
        ms = sorted(s * 1e3 for s in samples_s)
        return cls(
            number=number,
            repeat=len(ms),
            warmup=warmup,
            mean_ms=statistics.fmean(ms),
            median_ms=statistics.median(ms),
            p90_ms=float(np.percentile(ms, 90)),
            std_ms=statistics.pstdev(ms) if len(ms) > 1 else 0.0,
            min_ms=ms[0],
            max_ms=ms[-1],
            samples_ms=tuple(ms),
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples_ms"] = list(self.samples_ms)
        return d


@dataclass(frozen=True)
class Comparison:
    """How an output compares with the reference output stored in the artifact."""

    max_abs_error: float
    max_rel_error: float  # max abs error / max |reference|
    tolerance: float
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare_outputs(output: np.ndarray, reference: np.ndarray, tolerance: float = RELATIVE_TOLERANCE) -> Comparison:
    if output.shape != reference.shape:
        return Comparison(float("inf"), float("inf"), tolerance, False)
    abs_err = float(np.max(np.abs(output.astype(np.float64) - reference.astype(np.float64)))) if output.size else 0.0
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    rel_err = abs_err / scale if scale > 0 else abs_err
    passed = bool(np.all(np.isfinite(output))) and rel_err <= tolerance
    return Comparison(abs_err, rel_err, tolerance, passed)


@dataclass(frozen=True)
class KernelTime:
    """One kernel's share of a run: its mean time per call, times the calls a run makes."""

    name: str
    kind: str
    shape: str
    calls: int
    mean_ms: float
    total_ms: float
    share: float  # percent of the sum over kernels

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _direct(fn: Callable[[], Any], _what: str) -> Any:
    return fn()


class LoadedModel:
    """A compiled model on a device (local, or remote over RPC): run and time it.

    ``guard(fn, what)`` runs every call that talks to the device; for a remote device it puts a
    deadline on the call (see :func:`tvmc_mobilenet.runtime.rpc.bounded`).
    """

    def __init__(
        self,
        module: Any,
        device: Any,
        input_shape: tuple[int, ...],
        input_dtype: str,
        holder: Any = None,
        guard: Callable[[Callable[[], Any], str], Any] = _direct,
    ):
        from tvm.runtime.vm import VirtualMachine

        self.device = device
        self.input_shape = tuple(input_shape)
        self.input_dtype = input_dtype
        self._guard = guard
        self._module = module
        self.remote = guard is not _direct
        #: Whether the model runs in this process's own memory: here, on the CPU (not over RPC,
        #: not on a GPU), so that host arrays can be passed and taken without copies.
        self._in_host_memory = not self.remote and device.dlpack_device_type() == DLPACK_CPU
        self._vm = guard(lambda: VirtualMachine(module, device), "loading the model")
        # Looked up once: looking "main" up took 5 µs a run, and str(dtype) another 5.
        self._main = guard(lambda: self._vm["main"], "loading the model")
        self._dtype = np.dtype(input_dtype)
        self._holder = holder  # keeps a temporary directory or RPC session alive
        self._input = None  # the device tensor each call's input is copied into

    def close(self) -> None:
        """Let go of the model, and of the RPC session it was loaded through (a board's server
        serves one session at a time). Dropping the last reference does the same."""
        self._vm = self._main = self._module = self._holder = self._input = None

    def _to_device(self, data: np.ndarray):
        import tvm

        if data.shape != self.input_shape or data.dtype != self._dtype:
            raise BadInputError(
                f"input has shape {tuple(data.shape)} and dtype {data.dtype}; the model expects "
                f"shape {self.input_shape} and dtype {self.input_dtype}"
            )

        if self._in_host_memory and readable_in_place(data):
            # Read in place: copying a 128×128 float input took 14 µs here, 30 µs right after a run
            # (the pool's spinning worker), against ~100 µs for an int8 0.25-128 run. The module
            # reads its input and never writes it.
            return self._guard(lambda: tvm.runtime.from_dlpack(data), "passing the input")

        def copy():
            # Else one device tensor, allocated once (allocating one per call took 24 µs for a
            # 128×128 input), the input copied into it.
            if self._input is None:
                self._input = tvm.runtime.empty(self.input_shape, self.input_dtype, self.device)
            self._input.copyfrom(np.ascontiguousarray(data))
            return self._input

        return self._guard(copy, "copying the input")

    def run(self, data: np.ndarray) -> np.ndarray:
        """The model's output for ``data`` (its first output where it has several), as a new array."""
        arg = self._to_device(data)

        def infer() -> np.ndarray:
            out = self._main(arg)
            if not hasattr(out, "numpy"):  # a tuple of outputs: the classifier's logits come first
                out = out[0]
            # In host memory the output is the VM's fresh tensor, taken without a copy (6-9 µs a run).
            return np.from_dlpack(out) if self._in_host_memory else out.numpy()

        return self._guard(infer, "running the model")

    def time(self, data: np.ndarray, *, number: int = 10, repeat: int = 20, warmup: int = 5) -> TimingStats:
        """Latency statistics; ``warmup`` runs are made first and excluded."""
        if number < 1 or repeat < 1 or warmup < 0:
            raise BadInputError(f"timing needs number ≥ 1, repeat ≥ 1, warmup ≥ 0 (got {number}, {repeat}, {warmup})")
        arg = self._to_device(data)

        def measure() -> list[float]:
            for _ in range(warmup):
                self._vm["main"](arg)
            evaluator = self._vm.time_evaluator("main", self.device, number=number, repeat=repeat)
            return list(evaluator(arg).results)

        return TimingStats.from_seconds(self._guard(measure, "timing the model"), number, warmup)

    def profile(self, kernels: list[dict[str, Any]], *, number: int = 10, repeat: int = 3) -> list[KernelTime]:
        """Time each kernel of the model alone on the device (``kernels``: the manifest's table).

        Each kernel runs with random inputs of its argument shapes, so the profile needs nothing
        from the compiler. Sorted by total time.
        """
        import tvm

        if self.remote:
            raise BadInputError(
                "--profile times kernels on this machine only: TVM 0.27's remote timer cannot reach the kernels "
                "inside a VM executable; profile a build for this host, or drop --profile"
            )
        library = self._module.imports[0] if self._module.imports else self._module  # the kernels' library
        rng = np.random.default_rng(0)
        times = []
        for kernel in kernels:
            args = [
                self._guard(
                    lambda shape=shape, dtype=dtype: tvm.runtime.tensor(rng.standard_normal(shape).astype(dtype), self.device),
                    "allocating kernel inputs",
                )
                for shape, dtype in kernel["args"]
            ]
            name = kernel["name"]

            def measure(name=name, args=args) -> float:
                evaluator = library.time_evaluator(name, self.device, number=number, repeat=repeat)
                return float(np.median(evaluator(*args).results))

            seconds = self._guard(measure, f"timing kernel {name}")
            times.append((kernel, seconds * 1e3))
        total = sum(ms * k["calls"] for k, ms in times) or 1.0
        rows = [
            KernelTime(k["name"], k["kind"], k["shape"], k["calls"], ms, ms * k["calls"], 100.0 * ms * k["calls"] / total)
            for k, ms in times
        ]
        return sorted(rows, key=lambda r: -r.total_ms)


def use_all_cores() -> int:
    """Make TVM's thread pool use every core this process may run on; returns the thread count.

    TVM sizes its pool from ``TVM_NUM_THREADS`` when the pool is first used; unset, it takes half
    the hardware threads on x86 (assuming hyper-threading), i.e. one thread on a 2-core VM without
    SMT. A value the user set is kept.
    """
    if "TVM_NUM_THREADS" not in os.environ:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        os.environ["TVM_NUM_THREADS"] = str(cores)
    return int(os.environ["TVM_NUM_THREADS"])


def load_local(artifact: Artifact) -> LoadedModel:
    """Load the artifact's (sha256-checked) library on this machine."""
    import tvm

    if artifact.device not in ("cpu", "cuda"):
        raise ArtifactError(f"artifact {str(artifact.path)!r} was built for a {artifact.device} device, which this tool cannot run")
    if not _same_arch(artifact):
        raise ArtifactError(
            f"artifact {str(artifact.path)!r} was built for {artifact.target_name} and cannot run on this machine; "
            "run it on the device with --rpc-tracker/--rpc-key or --rpc-host/--rpc-port"
        )
    if artifact.device == "cuda":
        _require_gpu_for(artifact)
    use_all_cores()
    workdir = tempfile.TemporaryDirectory(prefix="tvmc-mobilenet-")
    lib_path = artifact.extract_library(Path(workdir.name))
    module = tvm.runtime.load_module(str(lib_path))
    device = tvm.cuda(0) if artifact.device == "cuda" else tvm.cpu(0)
    return LoadedModel(module, device, artifact.input_shape, artifact.input_dtype, holder=workdir)


def _require_gpu_for(artifact: Artifact) -> None:
    """A CUDA artifact needs a GPU here at least as new as its architecture (its PTX lets the
    driver compile it for a newer one, nothing runs it on an older one)."""
    from tvmc_mobilenet.targets.registry import local_cuda_arch

    built_for = str(artifact.manifest["target"].get("tvm", {}).get("arch", ""))
    local = local_cuda_arch()
    if local is None:
        raise ArtifactError(
            f"artifact {str(artifact.path)!r} was built for an NVIDIA GPU ({artifact.target_name}, {built_for}) and this machine "
            "has none (or no CUDA driver); run it on the device with --rpc-tracker/--rpc-key or --rpc-host/--rpc-port"
        )
    if _arch_number(local) < _arch_number(built_for):
        raise ArtifactError(
            f"artifact {str(artifact.path)!r} was built for {built_for}; this machine's GPU is {local}, which cannot run it; "
            f"rebuild with --target cuda --arch {local}"
        )


def _arch_number(arch: str) -> int:
    digits = "".join(ch for ch in arch if ch.isdigit())
    return int(digits) if digits else 0


def load_remote(artifact: Artifact, rpc) -> LoadedModel:
    """Send the artifact's (sha256-checked) library to a device over TVM RPC and load it there.

    ``rpc`` is a :class:`tvmc_mobilenet.runtime.rpc.RpcTarget`; every step has a deadline.
    """
    from tvmc_mobilenet.runtime.rpc import bounded, open_session

    artifact.verify_library()  # never send native code that is not what the manifest describes
    session = open_session(rpc)
    where = rpc.describe()

    def guard(fn: Callable[[], Any], what: str) -> Any:
        return bounded(fn, rpc.call_timeout, f"{what} on {where}")

    remote_name = f"tvmc_mobilenet_{artifact.manifest['library']['sha256'][:16]}.so"
    library = bytearray(artifact.library_bytes)
    guard(lambda: session.upload(library, remote_name), "uploading the library")
    module = guard(lambda: session.load_module(remote_name), "loading the library")
    device = guard(lambda: session.cuda(0) if artifact.device == "cuda" else session.cpu(0), "opening the device")
    return LoadedModel(module, device, artifact.input_shape, artifact.input_dtype, holder=session, guard=guard)


def _same_arch(artifact: Artifact) -> bool:
    import platform

    target = artifact.manifest["target"].get("tvm", {})
    cpu_side = target.get("host", {}) if artifact.device == "cuda" else target
    triple = str(cpu_side.get("mtriple", ""))
    return not triple or triple.startswith(platform.machine())


def check_against_reference(output: np.ndarray, artifact: Artifact) -> Comparison:
    """Compare an output of the reference input with the stored reference output; raise if off."""
    tolerance = artifact.manifest.get("verification", {}).get("tolerance", RELATIVE_TOLERANCE)
    comparison = compare_outputs(output, artifact.reference_output(), tolerance)
    if not comparison.passed:
        raise VerificationError(
            f"artifact {str(artifact.path)!r}: output differs from the reference by {comparison.max_abs_error:.3g} "
            f"(relative {comparison.max_rel_error:.3g} > tolerance {tolerance:g}); the module or device is faulty"
        )
    return comparison


def verify_on_reference(model: LoadedModel, artifact: Artifact) -> Comparison:
    """Run the stored reference input and compare with the stored reference output."""
    return check_against_reference(model.run(artifact.reference_input()), artifact)
