"""Untuned TVM build against PyTorch eager and ONNX Runtime, measured in one run on this machine.

For each (α, resolution) the same network and weights are run with the same thread count by
``tvmc-mobilenet build`` (untuned), by stock TVM (``tvm.compile`` with its default pipeline), by
PyTorch eager and by ONNX Runtime; medians and ratios go to a JSON file.

    python benchmarks/untuned_vs_peers.py [--threads 2] [--out benchmarks/results/untuned_vs_peers.json]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_MODELS = [(1.0, 224), (0.5, 160), (0.25, 128)]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    p.add_argument(
        "--models",
        default=",".join(f"{a:g}-{r}" for a, r in DEFAULT_MODELS),
        help="comma-separated ALPHA-RESOLUTION pairs (default: %(default)s)",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per engine and model (default 5)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "untuned_vs_peers.json")
    return p.parse_args()


def results_header(benchmark: str, threads: int | None) -> dict:
    """The fields every results file of ``benchmarks/`` opens with: what, when, where, how (the
    threads left out for a benchmark that runs nothing)."""
    header = {
        "benchmark": benchmark,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "threads": threads,
        "command": " ".join(["python", f"benchmarks/{benchmark}.py", *sys.argv[1:]]),
    }
    return {key: value for key, value in header.items() if value is not None}


def time_interleaved(engines: dict, seconds: float, turn_seconds: float = 0.15, warmup: int = 10) -> dict:
    """Per engine, median/mean/p10/p90 of single-run latencies (ms).

    The engines take turns of about ``turn_seconds`` each until every one has had ``seconds``, so
    that a burst of load from other tenants of a shared machine hits them all alike. Turns are
    short: bursts here last seconds, and with six turns of ~1 s one burst could take half of one
    engine's samples and move its median by 2× (a 0.25-128 run on 2026-12-07).
    """
    rounds = max(6, round(seconds / turn_seconds))
    for fn in engines.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            deadline = time.perf_counter() + seconds / rounds
            while time.perf_counter() < deadline or len(samples[name]) < 2:
                t0 = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = {
            "median_ms": statistics.median(values),
            "mean_ms": statistics.fmean(values),
            "p10_ms": values[int(0.1 * (len(values) - 1))],
            "p90_ms": values[int(0.9 * (len(values) - 1))],
            "runs": len(values),
        }
    return out


def stock_tvm(net, data):
    """TVM as a user gets it without this tool: import and ``tvm.compile`` with the default pipeline."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    import torch

    with torch.no_grad():
        mod = from_exported_program(torch.export.export(net, (torch.from_numpy(data),)))
    from tvmc_mobilenet.targets.host import host_target_json

    ex = tvm.compile(mod, target=tvm.target.Target(host_target_json()))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    arg = tvm.runtime.tensor(data)
    return functools.partial(vm["main"], arg)


def main() -> int:
    args = parse_args()
    # Thread counts must be fixed before the engines start their pools.
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import onnxruntime
    import torch

    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.options import ModelOptions
    from tvmc_mobilenet.model.cost import model_cost
    from tvmc_mobilenet.model.network import build_network
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.models.split(","):
            alpha_text, resolution_text = item.split("-")
            alpha, resolution = float(alpha_text), int(resolution_text)
            config = BuildConfig(model=ModelOptions(alpha=alpha, resolution=resolution), output=Path(tmp) / f"{item}.tar")
            model_config = config.model.model_config()
            print(f"{model_config.name}: building with TVM…", file=sys.stderr)
            started = time.perf_counter()
            build = build_model(config)
            build_seconds = time.perf_counter() - started
            artifact = open_artifact(build.artifact_path)
            data = artifact.reference_input()

            tvm_model = load_local(artifact)
            net = build_network(model_config, seed=config.model.seed)
            x = torch.from_numpy(data)
            onnx_path = Path(tmp) / f"{item}.onnx"
            torch.onnx.export(net, (x,), str(onnx_path), dynamo=False, input_names=["input"])
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            ort_out = session.run(None, {"input": data})[0]
            assert np.max(np.abs(ort_out - artifact.reference_output())) <= 1e-3 * np.max(np.abs(ort_out))
            with torch.no_grad():
                stats = time_interleaved(
                    {
                        "tvm": functools.partial(tvm_model.run, data),
                        "torch": functools.partial(net, x),
                        "ort": functools.partial(session.run, None, {"input": data}),
                        "tvm_stock": stock_tvm(net, data),
                    },
                    args.seconds,
                )
            tvm_stats, torch_stats, ort_stats = stats["tvm"], stats["torch"], stats["ort"]

            flops = model_cost(model_config).flops
            row = {
                "alpha": alpha,
                "resolution": resolution,
                "mult_adds": model_cost(model_config).mult_adds,
                "tvm_untuned": tvm_stats,
                "tvm_stock_compile": stats["tvm_stock"],
                "pytorch_eager": torch_stats,
                "onnxruntime": ort_stats,
                "tvm_over_onnxruntime": tvm_stats["median_ms"] / ort_stats["median_ms"],
                "tvm_over_pytorch": tvm_stats["median_ms"] / torch_stats["median_ms"],
                "stock_over_tvm": stats["tvm_stock"]["median_ms"] / tvm_stats["median_ms"],
                "tvm_gflops": flops / tvm_stats["median_ms"] / 1e6,
                "tvm_build_seconds": build_seconds,
                "verification": build.verification,
            }
            results.append(row)
            print(
                f"{model_config.name}: TVM untuned {tvm_stats['median_ms']:.2f} ms "
                f"(stock TVM {stats['tvm_stock']['median_ms']:.0f} ms), PyTorch {torch_stats['median_ms']:.2f} ms, "
                f"ONNX Runtime {ort_stats['median_ms']:.2f} ms → TVM/ORT {row['tvm_over_onnxruntime']:.1f}×, "
                f"TVM/PyTorch {row['tvm_over_pytorch']:.2f}×",
                file=sys.stderr,
            )
    payload = {
        "benchmark": "untuned_vs_peers",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "tvm": __import__("tvm").__version__,
        },
        "results": results,
    }
    from tvmc_mobilenet.files import write_json

    write_json(args.out, payload)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
