"""What a run costs beyond the model's own kernels: ``LoadedModel.run`` against the bare VM call.

Three ways of running one artifact take turns (benchmarks/untuned_vs_peers.time_interleaved):

* ``vm``: the compiled ``main`` called on a tensor prepared once, its output left as a TVM tensor
  (the floor: no input or output handling);
* ``run_in_place``: ``LoadedModel.run`` on the artifact's reference input, which is 64-byte
  aligned, so TVM reads it in place;
* ``run_copied``: ``LoadedModel.run`` on the same values 16 bytes off that boundary, which it must
  copy into its own tensor first (the copy every run made before fcb4da0).

    python benchmarks/run_overhead.py ARTIFACT.tar [--seconds 6] [--threads 2] --out FILE.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from untuned_vs_peers import results_header, time_interleaved  # noqa: E402  (one timing method for every benchmark)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifact", type=Path)
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per way of running (default 6)")
    p.add_argument("--threads", type=int, default=2, help="TVM threads (default 2)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import tvm

    from tvmc_mobilenet.files import write_json
    from tvmc_mobilenet.runtime.arrays import TVM_ALIGNMENT, readable_in_place
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    artifact = open_artifact(args.artifact)
    model = load_local(artifact)
    data = artifact.reference_input()
    raw = np.empty(data.nbytes + 2 * TVM_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % TVM_ALIGNMENT + 16
    offset = raw[start : start + data.nbytes].view(data.dtype).reshape(data.shape)
    offset[...] = data
    assert readable_in_place(data) and not readable_in_place(offset)
    main_function = model._vm["main"]
    prepared = tvm.runtime.tensor(data)
    stats = time_interleaved(
        {
            "vm": lambda: main_function(prepared),
            "run_in_place": lambda: model.run(data),
            "run_copied": lambda: model.run(offset),
        },
        args.seconds,
    )
    for label, s in stats.items():
        print(f"{label}: median {s['median_ms'] * 1e3:.1f} µs", file=sys.stderr)
    artifact_fields = {"path": str(args.artifact), "model": artifact.manifest["model"]["name"]}
    write_json(args.out, {**results_header("run_overhead", args.threads), "artifact": artifact_fields, "latency": stats})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
