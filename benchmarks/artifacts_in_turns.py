"""Time built artifacts on this machine, taking turns, to compare builds of one model.

Each artifact runs its stored reference input through ``LoadedModel.run`` (input in, output out);
the artifacts take turns (benchmarks/untuned_vs_peers.time_interleaved), so a burst of load from
other tenants hits them all alike. Medians go to a JSON file.

    python benchmarks/artifacts_in_turns.py LABEL=A.tar LABEL=B.tar … [--seconds 6] --out FILE.json
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from untuned_vs_peers import time_interleaved  # noqa: E402  (one timing method for every benchmark)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts", nargs="+", help="LABEL=PATH of each artifact")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per artifact (default 6)")
    p.add_argument("--threads", type=int, default=2, help="TVM threads (default 2)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    from tvmc_mobilenet.files import write_json
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    engines, sources = {}, {}
    for item in args.artifacts:
        label, _, path = item.partition("=")
        artifact = open_artifact(Path(path))
        engines[label] = functools.partial(load_local(artifact).run, artifact.reference_input())
        sources[label] = {"path": path, "model": artifact.manifest["model"]["name"], "target": artifact.manifest["target"]["name"]}
    stats = time_interleaved(engines, args.seconds)
    for label, s in stats.items():
        print(f"{label}: median {s['median_ms']:.3f} ms", file=sys.stderr)
    write_json(
        args.out,
        {
            "benchmark": "artifacts_in_turns",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "threads": args.threads,
            "command": " ".join(["python", "benchmarks/artifacts_in_turns.py", *sys.argv[1:]]),
            "artifacts": sources,
            "latency": stats,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
