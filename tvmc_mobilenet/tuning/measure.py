"""How tuning candidates are built and measured on this machine.

MetaSchedule's ``LocalBuilder`` is slow on a small machine, and the reasons were measured here
(2 cores, TVM 0.27):

1. its ``default_build`` runs ``import tvm.s_tir.tensor_intrin``, which registers every tensor
   intrinsic of every backend by parsing TVMScript: **23 s** (17 s of it CUDA's), against
   0.1–0.4 s for the build itself;
2. ``LocalBuilder.build`` starts a new process pool for every batch (a comment blames a memory
   leak), so every batch pays that import again in every worker, plus TVM's own import (2.5 s).
   With 2 workers and 32 candidates a batch costs ~25 s before the first candidate is built;
   with a slower target (``mcpu=sapphirerapids``) the first build of each worker passes the 30 s
   timeout and the whole batch is lost ("Build errors: 32 sample(s)");
3. it exports a tar of object files that the runner must link with gcc, serially, before timing.

:class:`PersistentBuilder` keeps its worker processes between batches (recycling each after
:data:`WORKER_USES` builds, which bounds any leak), builds without importing the tensor
intrinsics (a scheduled kernel arrives with any tensorisation already applied, so the build does
not need them) and exports a linked shared library, so linking runs in the parallel builders and
the runner only ``dlopen``s. It is TVM's own ``PopenPoolExecutor`` and ``PyBuilder`` interface; a
crashed or hung build is a failed trial, never a failed tune.

The runner is MetaSchedule's ``LocalRunner``; what we add is the thread count: TVM's thread pool
takes ``TVM_NUM_THREADS`` and otherwise half the hardware threads on x86, i.e. kernels would be
tuned single-threaded on a 2-core VM.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

#: Builds a worker process serves before it is replaced.
WORKER_USES = 256


def ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C in the terminal is for the tune to handle, not for its workers.

    The tune stops after the batch in flight; a worker killed by the same SIGINT would turn that
    batch into failed trials.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_and_export(mod: Any, target: Any, cross_compiler: str | None = None, cuda_compiler: str | None = None) -> str:
    """Compile one scheduled kernel and export it as a shared library; returns its path.

    Runs in a builder worker process. ``cross_compiler`` links libraries for another machine
    (e.g. ``aarch64-linux-gnu-g++`` for a Raspberry Pi or a Jetson's host side);
    ``cuda_compiler`` (``nvcc``/``nvrtc``) compiles a GPU kernel, as ``build --cuda-compiler``.
    """
    from tvmc_mobilenet.targets.toolchain import CudaCompiler

    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    from tvmc_mobilenet.compiler.cuda_binary import CompiledCudaPacker, keep_cuda_source

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    with keep_cuda_source(target):
        runtime_module = tvm.compile(mod, target=target)
    path = os.path.join(tempfile.mkdtemp(prefix="tvmc-mobilenet-candidate-"), "kernel.so")
    fcompile = None
    if cross_compiler:
        from tvm.support import cc

        fcompile = cc.cross_compiler(cross_compiler)
    # A CUDA kernel is compiled into the library (nvcc or NVRTC 11.8), as in artifacts: the device needs no compiler.
    compiler = CudaCompiler(cuda_compiler) if cuda_compiler else None
    pack = CompiledCudaPacker(target, compiler) if target.kind.name == "cuda" else None
    runtime_module.export_library(path, fcompile=fcompile, fpack_imports=pack)
    return path


def _make_builder_class():
    """The PyBuilder subclass, created on first use so that importing this module stays cheap."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object
    class PersistentBuilder(PyBuilder):
        """A MetaSchedule builder whose worker processes live across batches."""

        def __init__(self, max_workers: int, timeout_sec: float, cross_compiler: str | None, cuda_compiler: str | None = None,
                     worker_uses: int = WORKER_USES):  # fmt: skip
            super().__init__()
            self.timeout_sec = timeout_sec
            self.cross_compiler = cross_compiler
            self.cuda_compiler = cuda_compiler
            self.pool = PopenPoolExecutor(
                max_workers=max_workers,
                timeout=timeout_sec,
                maximum_process_uses=worker_uses,
                initializer=ignore_interrupts,
            )

        def build(self, build_inputs):
            results = []
            jobs = [(inp.mod, inp.target, self.cross_compiler, self.cuda_compiler) for inp in build_inputs]
            for outcome in self.pool.map_with_error_catching(lambda job: build_and_export(*job), jobs):
                if outcome.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(outcome.value, None))
                elif outcome.status == StatusKind.TIMEOUT:
                    results.append(BuilderResult(None, f"build timed out after {self.timeout_sec:g} s"))
                else:
                    results.append(BuilderResult(None, f"build failed: {outcome.value}"))
            return results

        def shutdown(self) -> None:
            self.pool.shutdown()

    return PersistentBuilder


_BUILDER_CLASS = None


def persistent_builder(max_workers: int, timeout_sec: float, cross_compiler: str | None = None, cuda_compiler: str | None = None):
    global _BUILDER_CLASS
    if _BUILDER_CLASS is None:
        _BUILDER_CLASS = _make_builder_class()
    return _BUILDER_CLASS(max_workers=max_workers, timeout_sec=timeout_sec, cross_compiler=cross_compiler, cuda_compiler=cuda_compiler)


def local_runner(timeout_sec: float):
    """MetaSchedule's LocalRunner (its worker inherits ``TVM_NUM_THREADS``: set it first)."""
    from tvm.s_tir import meta_schedule as ms

    return ms.runner.LocalRunner(
        timeout_sec=timeout_sec,
        initializer=ignore_interrupts,
        evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=40, enable_cpu_cache_flush=False),
    )


def create_session_or_fail(rpc_config):
    """RPCRunner's session step, failing at once when no device is registered under the key.

    TVM's tracker queues a request for a key nobody serves until one registers; with the boards
    gone every remaining trial would wait out its whole timeout before failing.
    """
    if rpc_config.count_num_servers(allow_missing=True) == 0:
        raise RuntimeError(f"no device is registered under key {rpc_config.tracker_key!r}")
    return rpc_config.connect_server()


def rpc_runner(rpc, timeout_sec: float, max_workers: int):
    """MetaSchedule's RPCRunner measuring on the boards registered under ``rpc.key``.

    ``max_workers`` sessions run at once, so measurements spread over that many boards. Its pool
    is replaced by one with a deadline per measurement: TVM 0.27's RPCRunner creates its pool
    without one, so a board that vanished mid-run would stall the tune instead of failing a trial.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.support.popen_pool import PopenPoolExecutor

    runner = ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(
            tracker_host=rpc.tracker_host,
            tracker_port=rpc.tracker_port,
            tracker_key=rpc.key,
            session_priority=1,
            session_timeout_sec=int(timeout_sec),
        ),
        evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=40, enable_cpu_cache_flush=False),
        f_create_session=create_session_or_fail,
        max_workers=max_workers,
        initializer=ignore_interrupts,
    )
    runner.pool.shutdown()
    runner.pool = PopenPoolExecutor(max_workers=max_workers, timeout=timeout_sec, initializer=ignore_interrupts)
    return runner
