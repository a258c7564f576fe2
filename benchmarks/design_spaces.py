"""Our pointwise/depthwise design spaces against MetaSchedule's generic one, same trial budget.

For each (α, resolution) the model is tuned twice from empty databases with the same budget and
search seed: once with ``--space generic`` (MetaSchedule's rules for every kernel), once with
``--space ours`` (our spaces for pointwise and depthwise kernels, the generic one for the rest).
Both tuned builds are then timed taking turns. Writes ``design_spaces.json`` (both tuning curves,
the trials our space needed to reach the generic space's final estimate, measured latencies) and
``design_spaces.png`` (both curves on one plot).

    python benchmarks/design_spaces.py [--trials 600] [--models 0.25-128] [--fresh]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from untuned_vs_peers import time_interleaved  # noqa: E402  (one timing method for every benchmark)

SPACES = ("generic", "ours")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="0.25-128", help="ALPHA-RESOLUTION pairs (default: %(default)s)")
    p.add_argument("--trials", type=int, default=600, help="trial budget per model and space (default 600)")
    p.add_argument("--seed", type=int, default=1, help="search seed, the same for both spaces")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per build and model")
    p.add_argument("--work-dir", type=Path, default=HERE / "work" / "spaces", help="tuning databases")
    p.add_argument("--fresh", action="store_true", help="delete earlier databases first")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p.parse_args()


def trials_to_reach(curve: list[tuple[int, float]], target_ms: float) -> int | None:
    return next((trials for trials, estimate in curve if estimate <= target_ms), None)


def main() -> int:
    args = parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.options import ModelOptions
    from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model
    from tvmc_mobilenet.tuning.database import open_tuning_database, tuning_curve, workload_key
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.models.split(","):
            alpha_text, resolution_text = item.split("-")
            alpha, resolution = float(alpha_text), int(resolution_text)
            row = {"alpha": alpha, "resolution": resolution, "trial_budget": args.trials, "seed": args.seed}
            runners = {}
            for space in SPACES:
                work_dir = args.work_dir / f"mobilenet_v1_{alpha:g}_{resolution}-{space}"
                if args.fresh and work_dir.exists():
                    shutil.rmtree(work_dir)
                print(f"{item}, {space} space: tuning to {args.trials} trials in {work_dir}…", file=sys.stderr)
                config = TuneConfig(
                    model=ModelOptions(alpha=alpha, resolution=resolution),
                    trials=args.trials,
                    work_dir=work_dir,
                    search_seed=args.seed,
                    space=space,
                )
                result = tune_model(config, log=lambda m: print(f"  {m}", file=sys.stderr))
                curve = tuning_curve(open_tuning_database(work_dir), [(workload_key(o.task.mod), o.task.weight) for o in result.outcomes])
                build = build_model(
                    BuildConfig(
                        model=ModelOptions(alpha=alpha, resolution=resolution), tuning_db=work_dir, output=Path(tmp) / f"{space}.tar"
                    )
                )
                artifact = open_artifact(build.artifact_path)
                runners[space] = functools.partial(load_local(artifact).run, artifact.reference_input())
                row[space] = {
                    "trials": curve[-1][0] if curve else 0,
                    "final_estimate_ms": curve[-1][1] if curve else None,
                    "tasks_in_our_spaces": sum(1 for o in result.outcomes if result.space_of(o.task) != "generic"),
                    "tuning_seconds": _tuning_seconds(work_dir),
                    "curve": curve,
                }
            generic_final = row["generic"]["final_estimate_ms"]
            reach = trials_to_reach(row["ours"]["curve"], generic_final) if generic_final else None
            row["ours_trials_to_reach_generic_final"] = reach
            row["ours_trials_share_of_generic"] = reach / row["generic"]["trials"] if reach else None
            row["ours_final_over_generic_final"] = row["ours"]["final_estimate_ms"] / generic_final if generic_final else None
            stats = time_interleaved({f"tuned_{space}": runners[space] for space in SPACES}, args.seconds)
            row["latency"] = stats
            row["measured_ours_over_generic"] = stats["tuned_ours"]["median_ms"] / stats["tuned_generic"]["median_ms"]
            rows.append(row)
            print(
                f"{item}: generic {generic_final:.3f} ms (est.) after {row['generic']['trials']} trials; ours reached it after "
                f"{reach} trials ({row['ours_trials_share_of_generic']}) and ended at {row['ours']['final_estimate_ms']:.3f} ms; "
                f"measured ours/generic {row['measured_ours_over_generic']:.2f}×",
                file=sys.stderr,
            )
    payload = {
        "benchmark": "design_spaces",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "design_spaces.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(rows, args.out / "design_spaces.png")
    print(f"wrote {args.out / 'design_spaces.json'} and {args.out / 'design_spaces.png'}", file=sys.stderr)
    return 0


def _tuning_seconds(work_dir: Path) -> float:
    """Seconds spent tuning this database over all runs (``tuning_runs.jsonl``), resumed ones included."""
    from tvmc_mobilenet.tuning.tune import HISTORY_FILE

    path = work_dir / HISTORY_FILE
    return sum(json.loads(line)["seconds"] for line in path.read_text().splitlines()) if path.exists() else 0.0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, row in enumerate(rows):
        label = f"α={row['alpha']:g}, {row['resolution']}px"
        for space, style in zip(SPACES, ("--", "-"), strict=True):
            if row[space]["curve"]:
                trials, estimate = zip(*row[space]["curve"], strict=True)
                ax.plot(trials, estimate, style, color=f"C{i}", label=f"{label}: {space} space")
    ax.set_xlabel("trials")
    ax.set_ylabel("estimated latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title(
        "MetaSchedule on this host (2 threads): estimated latency vs trials\n"
        "our pointwise/depthwise spaces vs the generic space (curves start once every task is measured)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
