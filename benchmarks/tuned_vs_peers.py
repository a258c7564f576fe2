"""Tuned TVM against untuned TVM, PyTorch eager and ONNX Runtime, in one run on this machine.

For each (α, resolution): tune with ``tvmc-mobilenet tune`` to the trial budget (a rerun continues
where the last one stopped: the tuning databases live in ``--work-dir``), build the tuned and the
untuned artifact, then time the four engines taking turns with the same thread count. Writes
``tuned_vs_peers.json`` (medians, ratios, tuning throughput, tuning curves) and
``tuning_curves.png`` (estimated end-to-end latency against trials, with ONNX Runtime's measured
latency for reference).

    python benchmarks/tuned_vs_peers.py [--trials 2000] [--models 1-224,0.5-160,0.25-128]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from untuned_vs_peers import time_interleaved  # noqa: E402  (one timing method for both benchmarks)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="1-224,0.5-160,0.25-128", help="ALPHA-RESOLUTION pairs (default: %(default)s)")
    p.add_argument("--trials", type=int, default=2000, help="trial budget per model (default 2000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per engine and model")
    p.add_argument("--work-dir", type=Path, default=HERE / "work" / "tuning", help="tuning databases (kept between runs)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import onnxruntime
    import torch

    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.options import ModelOptions
    from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model
    from tvmc_mobilenet.tuning.database import open_tuning_database, tuning_curve, workload_key
    from tvmc_mobilenet.model.cost import model_cost
    from tvmc_mobilenet.model.network import build_network
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.models.split(","):
            alpha_text, resolution_text = item.split("-")
            alpha, resolution = float(alpha_text), int(resolution_text)
            work_dir = args.work_dir / f"mobilenet_v1_{alpha:g}_{resolution}"
            print(f"{item}: tuning to {args.trials} trials in {work_dir}…", file=sys.stderr)
            tuned = tune_model(
                TuneConfig(model=ModelOptions(alpha=alpha, resolution=resolution), trials=args.trials, work_dir=work_dir),
                log=lambda m: print(f"  {m}", file=sys.stderr),
            )
            tuned_build = build_model(
                BuildConfig(model=ModelOptions(alpha=alpha, resolution=resolution), tuning_db=work_dir, output=Path(tmp) / "t.tar")
            )
            untuned_build = build_model(
                BuildConfig(model=ModelOptions(alpha=alpha, resolution=resolution), no_tuning_db=True, output=Path(tmp) / "u.tar")
            )
            artifact = open_artifact(tuned_build.artifact_path)
            data = artifact.reference_input()
            tuned_model = load_local(artifact)
            untuned_model = load_local(open_artifact(untuned_build.artifact_path))

            config = ModelOptions(alpha=alpha, resolution=resolution).model_config()
            net = build_network(config, seed=0)
            x = torch.from_numpy(data)
            onnx_path = Path(tmp) / f"{item}.onnx"
            torch.onnx.export(net, (x,), str(onnx_path), dynamo=False, input_names=["input"])
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            assert np.max(np.abs(session.run(None, {"input": data})[0] - artifact.reference_output())) < 1e-2
            with torch.no_grad():
                stats = time_interleaved(
                    {
                        "tvm_tuned": functools.partial(tuned_model.run, data),
                        "tvm_untuned": functools.partial(untuned_model.run, data),
                        "pytorch_eager": functools.partial(net, x),
                        "onnxruntime": functools.partial(session.run, None, {"input": data}),
                    },
                    args.seconds,
                )
            database = open_tuning_database(work_dir)
            curve = tuning_curve(database, [(workload_key(o.task.mod), o.task.weight) for o in tuned.outcomes])
            runs = _tuning_runs(work_dir, config.name)
            median = {name: s["median_ms"] for name, s in stats.items()}
            row = {
                "alpha": alpha,
                "resolution": resolution,
                "mult_adds": model_cost(config).mult_adds,
                "latency": stats,
                "tuned_over_onnxruntime": median["tvm_tuned"] / median["onnxruntime"],
                "tuned_over_pytorch": median["tvm_tuned"] / median["pytorch_eager"],
                "untuned_over_tuned": median["tvm_untuned"] / median["tvm_tuned"],
                "trials": sum(o.trials for o in tuned.outcomes),
                "kernels_tuned": tuned_build.manifest["tuning"]["kernels_tuned"],
                "kernels_total": tuned_build.manifest["tuning"]["kernels_total"],
                "estimated_latency_ms": tuned.estimated_latency_ms,
                "tuning_seconds": sum(r["seconds"] for r in runs),
                "tuning_trials_per_minute": 60 * sum(r["trials_run"] for r in runs) / max(1e-9, sum(r["seconds"] for r in runs)),
                "tuning_runs": runs,
                "failed_trials": _failed_trials(database, tuned),
                "curve": curve,
                "verification": tuned_build.verification,
            }
            rows.append(row)
            print(
                f"{item}: tuned {median['tvm_tuned']:.2f} ms, untuned {median['tvm_untuned']:.2f} ms, "
                f"PyTorch {median['pytorch_eager']:.2f} ms, ONNX Runtime {median['onnxruntime']:.2f} ms → "
                f"tuned/ORT {row['tuned_over_onnxruntime']:.2f}× after {row['trials']} trials",
                file=sys.stderr,
            )
    payload = {
        "benchmark": "tuned_vs_peers",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "trial_budget": args.trials,
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tuned_vs_peers.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(rows, args.out / "tuning_curves.png")
    print(f"wrote {args.out / 'tuned_vs_peers.json'} and {args.out / 'tuning_curves.png'}", file=sys.stderr)
    return 0


def _tuning_runs(work_dir: Path, model: str) -> list[dict]:
    """The summaries of every tune run of this model in the database (``tuning_runs.jsonl``)."""
    from tvmc_mobilenet.tuning.tune import HISTORY_FILE

    path = work_dir / HISTORY_FILE
    runs = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in runs if r["model"] == model]


def _failed_trials(database, tuned) -> int:
    from tvmc_mobilenet.tuning.database import run_seconds, workload_key

    keys = {workload_key(o.task.mod) for o in tuned.outcomes}
    records = database.database.get_all_tuning_records()
    return sum(1 for r in records if int(r.workload.as_json()[0]) in keys and run_seconds(r.run_secs) is None)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, row in enumerate(rows):
        color = f"C{i}"
        label = f"α={row['alpha']:g}, {row['resolution']}px"
        if row["curve"]:
            trials, estimate = zip(*row["curve"], strict=True)
            ax.plot(trials, estimate, color=color, label=f"{label}: tuned TVM (estimated)")
        ort = row["latency"]["onnxruntime"]["median_ms"]
        ax.axhline(ort, color=color, linestyle="--", linewidth=1, label=f"{label}: ONNX Runtime (measured)")
        ax.plot([row["trials"]], [row["latency"]["tvm_tuned"]["median_ms"]], "o", color=color)
    ax.set_xlabel("trials")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title("MobileNet v1 tuning on this host (2 threads): estimated latency vs trials\n(dots: measured tuned latency)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
