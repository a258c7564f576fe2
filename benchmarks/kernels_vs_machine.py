"""Each pointwise and depthwise kernel of an untuned build against this machine's own limits.

Pointwise kernels are rated in GFLOP/s against the machine's sgemm rate (the best of PyTorch's
and NumPy's float32 GEMM at 1024³ and 2048³, same thread count); depthwise kernels in GB/s (every argument read or written
once, the least traffic possible) against its memory bandwidth (NumPy copy of 256 MiB, bytes read
plus written) and its in-cache bandwidth (the same copy of 1 MiB). All measured in this run.

    python benchmarks/kernels_vs_machine.py [--model 1-224] [--threads 2] [--out benchmarks/results/kernels_vs_machine.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="1-224", help="ALPHA-RESOLUTION (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results" / "kernels_vs_machine.json")
    return p.parse_args()


def best_seconds(fn, repeat: int = 7, min_seconds: float = 0.2) -> float:
    """Best (least disturbed) mean time of ``fn`` over ``repeat`` timed batches."""
    fn()
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - start >= min_seconds / repeat or batch >= 1 << 16:
            break
        batch *= 2
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        times.append((time.perf_counter() - start) / batch)
    return min(times)


def sgemm_gflops() -> dict[str, float]:
    """float32 GEMM rates of PyTorch (oneDNN/MKL) and NumPy (OpenBLAS) at 1024³ and 2048³."""
    import numpy as np
    import torch

    rates = {}
    for size in (1024, 2048):
        a, b = torch.randn(size, size), torch.randn(size, size)
        out = torch.empty(size, size)
        rates[f"torch_{size}"] = 2 * size**3 / best_seconds(lambda a=a, b=b, out=out: torch.mm(a, b, out=out)) / 1e9
        x, y = a.numpy(), b.numpy()
        z = np.empty_like(x)
        rates[f"numpy_{size}"] = 2 * size**3 / best_seconds(lambda x=x, y=y, z=z: np.matmul(x, y, out=z)) / 1e9
    return rates


def copy_gbytes_per_second(nbytes: int) -> float:
    import numpy as np

    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    return 2 * nbytes / best_seconds(lambda: np.copyto(dst, src)) / 1e9


def main() -> int:
    args = parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.options import ModelOptions
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    alpha_text, resolution_text = args.model.split("-")
    with tempfile.TemporaryDirectory() as tmp:
        build = build_model(
            BuildConfig(
                model=ModelOptions(alpha=float(alpha_text), resolution=int(resolution_text)), no_tuning_db=True, output=Path(tmp) / "m.tar"
            )
        )
        artifact = open_artifact(build.artifact_path)
        kernels = artifact.manifest["kernels"]
        profile = load_local(artifact).profile(kernels, number=20, repeat=5)

    gemm = sgemm_gflops()
    machine = {
        "sgemm_gflops": max(gemm.values()),
        "sgemm_gflops_by_library": gemm,
        "memory_gbytes_per_s": copy_gbytes_per_second(256 << 20),
        "cache_gbytes_per_s": copy_gbytes_per_second(1 << 20),
    }
    by_name = {k["name"]: k for k in kernels}
    rows = []
    for timing in profile:
        kernel = by_name[timing.name]
        if kernel["kind"] not in ("pointwise", "depthwise"):
            continue
        seconds = timing.mean_ms / 1e3
        data, *_, out = kernel["args"]
        row = {"name": timing.name, "kind": kernel["kind"], "shape": kernel["shape"], "calls": kernel["calls"], "ms": timing.mean_ms}
        if kernel["kind"] == "pointwise":
            flops = 2 * math.prod(out[0]) * data[0][-1]  # NHWC: every output sums C_in products
            row["gflops"] = flops / seconds / 1e9
            row["of_sgemm"] = row["gflops"] / machine["sgemm_gflops"]
        else:
            nbytes = sum(math.prod(shape) * 4 for shape, _dtype in kernel["args"])
            row["gbytes_per_s"] = nbytes / seconds / 1e9
            row["of_memory_bandwidth"] = row["gbytes_per_s"] / machine["memory_gbytes_per_s"]
            row["of_cache_bandwidth"] = row["gbytes_per_s"] / machine["cache_gbytes_per_s"]
        rows.append(row)
    pointwise = [r for r in rows if r["kind"] == "pointwise"]
    payload = {
        "benchmark": "kernels_vs_machine",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), **machine},
        "threads": args.threads,
        "model": build.manifest["model"]["name"],
        "build": "untuned (default schedules)",
        "pointwise_time_weighted_of_sgemm": sum(r["of_sgemm"] * r["ms"] * r["calls"] for r in pointwise)
        / sum(r["ms"] * r["calls"] for r in pointwise),
        "pointwise_median_of_sgemm": statistics.median(r["of_sgemm"] for r in pointwise),
        "kernels": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(
        f"sgemm {machine['sgemm_gflops']:.0f} GFLOP/s, memory {machine['memory_gbytes_per_s']:.1f} GB/s, "
        f"cache {machine['cache_gbytes_per_s']:.1f} GB/s; pointwise at {100 * payload['pointwise_time_weighted_of_sgemm']:.0f}% "
        f"of sgemm (time-weighted); wrote {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
