"""The GPU check: MobileNet v1 1.0-224 on this machine's NVIDIA GPU, end to end, in one JSON file.

For batch 1 and 32: ``build --target cuda`` (architecture detected; kernels compiled by nvcc into
the artifact, then loaded from it and verified on the GPU against PyTorch), timed with TVM's
time evaluator against PyTorch eager with cuDNN on the same GPU, the engines taking turns. Then
a build at batch 1 whose kernels CUDA 11.8's NVRTC compiled into a cubin (the Jetson Xavier's
route, ``--cuda-compiler nvrtc``), verified and timed the same way, when the GPU is sm_90 or
older; then a brief ``tune`` at batch 1 (MetaSchedule, our design spaces, LocalRunner on the
GPU), a build with its records, and the same timing. Needs no network; each step is bounded by a deadline
so that the whole fits in ``--budget`` seconds (default 540), and a step that cannot run is
recorded with the reason instead of stopping the rest.

    python benchmarks/cuda_check.py [--trials 256] [--out benchmarks/results/cuda_check.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

BATCHES = (1, 32)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--trials", type=int, default=256, help="tuning trials at batch 1 (0: no tuning)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole check (default 540)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cuda_check.json")
    return p.parse_args()


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def time_engines(engines: dict, rounds: int = 7) -> dict:
    """Per engine, the median over ``rounds`` of its per-call latency (ms); the engines take turns.

    Each engine is a function that makes a batch of calls with its input already on the GPU and
    returns their mean latency, synchronised with the device (TVM's time evaluator; CUDA events
    for PyTorch), so neither pays for copies the other does not.
    """
    for fn in engines.values():
        fn()  # warm-up (cuDNN autotuning, module loading)
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            samples[name].append(fn())
    return {name: {"median_ms": statistics.median(v), "min_ms": min(v), "rounds": len(v)} for name, v in samples.items()}


def step(report: dict, name: str, deadline: float, fn):
    """Run one step unless the budget is spent; record its seconds, or why it did not run."""
    if time.time() > deadline:
        report["steps"][name] = {"status": "skipped", "reason": "time budget spent"}
        return None
    started = time.time()
    try:
        value = fn()
        report["steps"][name] = {"status": "ok", "seconds": round(time.time() - started, 1)}
        return value
    except Exception as exc:  # recorded, and the check goes on with the next step
        report["steps"][name] = {
            "status": "failed",
            "seconds": round(time.time() - started, 1),
            "error": f"{type(exc).__name__}: {exc}"[:2000],
        }
        traceback.print_exc()
        return None


def main() -> int:
    args = parse_args()
    started = time.time()
    deadline = started + args.budget
    report: dict = {
        "benchmark": "cuda_check",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"gpu": gpu_name(), "platform": f"{platform.system()} {platform.machine()}"},
        "model": {"alpha": args.alpha, "resolution": args.resolution},
        "steps": {},
        "results": {},
    }
    import numpy as np
    import torch

    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.options import ModelOptions, TargetOptions
    from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model
    from tvmc_mobilenet.model.network import build_network
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local
    from tvmc_mobilenet.targets.registry import local_cuda_arch

    arch = local_cuda_arch()
    report["machine"].update({"arch": arch, "torch": torch.__version__, "torch_cuda": torch.cuda.is_available()})
    if arch is None:
        report["error"] = "no NVIDIA GPU visible to TVM (tvm.cuda(0) does not exist): nothing to check"
        return finish(report, args.out, started, code=1)
    torch.backends.cudnn.benchmark = True

    with tempfile.TemporaryDirectory(prefix="cuda-check-") as tmp:

        def pytorch_engine(config: BuildConfig, data: np.ndarray, calls: int = 50):
            net = build_network(config.model.model_config(), seed=config.model.seed).cuda().eval()
            x = torch.from_numpy(data).cuda()

            def run() -> float:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                with torch.no_grad():
                    start.record()
                    for _ in range(calls):
                        net(x)
                    end.record()
                torch.cuda.synchronize()
                return start.elapsed_time(end) / calls

            return run

        def tvm_engine(artifact_path: Path, data: np.ndarray, calls: int = 50):
            model = load_local(open_artifact(artifact_path))
            return lambda: model.time(data, number=calls, repeat=1, warmup=0).median_ms

        def measure(label: str, batch: int, artifact_path: Path, config: BuildConfig) -> None:
            data = open_artifact(artifact_path).reference_input()
            engines = {"tvm": tvm_engine(artifact_path, data)}
            if torch.cuda.is_available():
                engines["pytorch_cudnn"] = pytorch_engine(config, data)
            times = time_engines(engines)
            entry = {"batch": batch, **{f"{name}_ms": t["median_ms"] for name, t in times.items()}, "timings": times}
            if "pytorch_cudnn" in times:
                entry["tvm_over_pytorch"] = times["tvm"]["median_ms"] / times["pytorch_cudnn"]["median_ms"]
            report["results"][label] = entry
            print(f"{label}: {json.dumps({k: v for k, v in entry.items() if k != 'timings'})}", file=sys.stderr)

        for batch in BATCHES:
            config = BuildConfig(
                model=ModelOptions(alpha=args.alpha, resolution=args.resolution, batch=batch),
                target=TargetOptions(name="cuda"),
                no_tuning_db=True,
                output=Path(tmp) / f"b{batch}.tar",
            )
            result = step(
                report,
                f"build_untuned_batch{batch}",
                deadline,
                lambda config=config: build_model(config, log=lambda m: print("•", m, file=sys.stderr)),
            )
            if result is not None:
                report["results"][f"verification_batch{batch}"] = result.verification
                step(
                    report,
                    f"bench_untuned_batch{batch}",
                    deadline,
                    lambda r=result, b=batch, c=config: measure(f"untuned_batch{b}", b, r.artifact_path, c),
                )

        from tvmc_mobilenet.targets.nvrtc import cuda11_nvrtc

        nvrtc = cuda11_nvrtc()
        if nvrtc is not None and arch in nvrtc.architectures():
            config = BuildConfig(
                model=ModelOptions(alpha=args.alpha, resolution=args.resolution),
                target=TargetOptions(name="cuda", cuda_compiler="nvrtc"),
                no_tuning_db=True,
                output=Path(tmp) / "nvrtc.tar",
            )
            result = step(report, "build_untuned_nvrtc11_batch1", deadline, lambda config=config: build_model(config))
            if result is not None:
                report["results"]["verification_nvrtc11_batch1"] = result.verification
                report["results"]["gpu_code_nvrtc11"] = result.manifest["library"]["gpu_code"]
                step(
                    report,
                    "bench_untuned_nvrtc11_batch1",
                    deadline,
                    lambda r=result, c=config: measure("untuned_nvrtc11_batch1", 1, r.artifact_path, c),
                )
        else:
            why = f"CUDA 11.8's NVRTC is missing or does not target {arch}"
            report["steps"]["build_untuned_nvrtc11_batch1"] = {"status": "not applicable", "reason": why}

        if args.trials > 0:
            work = Path(tmp) / "tuning"
            tune_config = TuneConfig(
                model=ModelOptions(alpha=args.alpha, resolution=args.resolution),
                target=TargetOptions(name="cuda"),
                trials=args.trials,
                work_dir=work,
                timeout=30.0,
                search_seed=1,
            )
            tuned = step(
                report, "tune_batch1", deadline - 90, lambda: tune_model(tune_config, log=lambda m: print("•", m, file=sys.stderr))
            )
            if tuned is not None:
                report["results"]["tuning"] = {
                    "trials_run": tuned.trials_run,
                    "trials_per_minute": round(tuned.trials_per_minute, 1),
                    "estimated_latency_ms": tuned.estimated_latency_ms,
                    "space": tuned.space,
                }
                config = BuildConfig(
                    model=ModelOptions(alpha=args.alpha, resolution=args.resolution),
                    target=TargetOptions(name="cuda"),
                    tuning_db=work,
                    output=Path(tmp) / "tuned.tar",
                )
                built = step(report, "build_tuned_batch1", deadline, lambda: build_model(config))
                if built is not None:
                    report["results"]["verification_tuned"] = built.verification
                    report["results"]["kernels_tuned"] = built.manifest["tuning"]["kernels_tuned"]
                    step(report, "bench_tuned_batch1", deadline, lambda: measure("tuned_batch1", 1, built.artifact_path, config))
    failed = [name for name, s in report["steps"].items() if s["status"] not in ("ok", "not applicable")]
    return finish(report, args.out, started, code=1 if failed else 0)


def finish(report: dict, out: Path, started: float, code: int) -> int:
    report["seconds"] = round(time.time() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} ({report['seconds']} s)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
