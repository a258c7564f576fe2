"""Time built artifacts on this machine, taking turns, to compare builds of one model.

Each artifact runs its stored reference input through ``LoadedModel.run`` (input in, output out);
the artifacts take turns (benchmarks/untuned_vs_peers.time_interleaved), so a burst of load from
other tenants hits them all alike. Medians go to a JSON file.

    python benchmarks/artifacts_in_turns.py LABEL=A.tar LABEL=B.tar … [--seconds 6] --out FILE.json

With ``--kernels KIND`` (``depthwise``, ``pointwise``, …) it times the artifacts' kernels of that
kind instead, each alone with random inputs of its argument shapes (``bench --profile``'s timer,
7 samples of 20 runs, ``--seconds`` unused), the n-th kernel of each artifact's table against the
others' n-th, taking turns. Use ``--threads 1`` to compare the kernels' code, not the machine's
second core.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from untuned_vs_peers import results_header, time_interleaved  # noqa: E402  (one timing method for every benchmark)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts", nargs="+", help="LABEL=PATH of each artifact")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per artifact (default 6)")
    p.add_argument("--threads", type=int, default=2, help="TVM threads (default 2)")
    p.add_argument("--kernels", metavar="KIND", help="time each kernel of this kind (manifest's table) instead of the whole model")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    from tvmc_mobilenet.files import write_json
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    engines, sources, artifacts = {}, {}, {}
    for item in args.artifacts:
        label, _, path = item.partition("=")
        artifact = artifacts[label] = open_artifact(Path(path))
        engines[label] = functools.partial(load_local(artifact).run, artifact.reference_input())
        sources[label] = {"path": path, "model": artifact.manifest["model"]["name"], "target": artifact.manifest["target"]["name"]}
    if args.kernels:
        stats = kernels_in_turns(artifacts, args.kernels)
    else:
        stats = time_interleaved(engines, args.seconds)
        for label, s in stats.items():
            print(f"{label}: median {s['median_ms']:.3f} ms", file=sys.stderr)
    write_json(args.out, {**results_header("artifacts_in_turns", args.threads), "artifacts": sources, "kernels" if args.kernels else "latency": stats})
    return 0


def kernels_in_turns(artifacts: dict, kind: str, rounds: int = 7, number: int = 20) -> list[dict]:
    """Per position in the artifacts' tables of ``kind`` kernels: each artifact's kernel timed alone
    by ``LoadedModel.profile`` (``number`` runs a sample), the artifacts taking turns for
    ``rounds`` samples each; medians in ms, times the kernel's calls per inference."""
    import statistics

    from tvmc_mobilenet.runtime.executor import load_local

    tables = {label: [k for k in a.manifest["kernels"] if k["kind"] == kind] for label, a in artifacts.items()}
    if len({len(t) for t in tables.values()}) != 1:
        raise SystemExit(f"error: the artifacts have different numbers of {kind} kernels: {({k: len(t) for k, t in tables.items()})}")
    models = {label: load_local(artifact) for label, artifact in artifacts.items()}
    rows, totals = [], dict.fromkeys(artifacts, 0.0)
    for position in range(len(next(iter(tables.values())))):
        samples: dict[str, list[float]] = {label: [] for label in tables}
        for _ in range(rounds):
            for label, table in tables.items():
                (timed,) = models[label].profile([table[position]], number=number, repeat=1)
                samples[label].append(timed.total_ms)
        row = {"position": position}
        for label, table in tables.items():
            ms = statistics.median(samples[label])
            totals[label] += ms
            row[label] = {"shape": table[position]["shape"], "calls": table[position]["calls"], "ms": ms}
        rows.append(row)
        print("  ".join(f"{label}: {row[label]['shape']} ×{row[label]['calls']} {row[label]['ms']:.4f} ms" for label in tables), file=sys.stderr)
    print("total: " + "  ".join(f"{label} {ms:.4f} ms" for label, ms in totals.items()), file=sys.stderr)
    return [*rows, {"total_ms": totals}]

if __name__ == "__main__":
    raise SystemExit(main())
