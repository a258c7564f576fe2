"""The host's TVM target: this machine's CPU as LLVM sees it."""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.lru_cache(maxsize=1)
def host_target_json() -> dict[str, Any]:
    """An LLVM target for this CPU: its ``mcpu`` as LLVM names it and its usable core count.

    ``-mcpu=native`` is rejected by TVM 0.27's LLVM, so the CPU name is asked of LLVM directly.
    The triple is left to LLVM's default (the wheel's LLVM reports a conda triple that the
    system's gcc does not need to know about).
    """
    import json

    import tvm
    from tvm.target import codegen

    cpu = str(codegen.llvm_get_system_cpu())
    target: dict[str, Any] = {"kind": "llvm", "num-cores": host_cores()}
    if cpu and cpu != "generic" and codegen.llvm_is_valid_cpu(cpu, str(codegen.llvm_get_system_triple())):
        target["mcpu"] = cpu
    return json.loads(str(tvm.target.Target(target)))


def host_cores() -> int:
    """Cores this process may use (respects CPU affinity and cgroup pinning)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
