"""A user's exported MobileNet against the built-in one: same α and resolution, both built by this
tool (untuned), LiteRT running the exported file alongside, engines taking turns in one run.

The exported model is made as users make theirs: Keras' ``MobileNet`` (v1, ``weights=None``: the
same layers and Mult-Adds, random weights) converted by TensorFlow's ``TFLiteConverter``, the same
file ``int8_vs_peers.py`` gives LiteRT. Issue 16's target: the export within 1.05× of the built-in
network's latency. Each row also records what the build left of the export (layout transforms,
kernels), the reason when it is not.

    pip install -e '.[peers,tflite]'   # tensorflow-cpu, ai-edge-litert, tflite
    python benchmarks/exported_vs_builtin.py [--models 1-224,0.5-160,0.25-128] [--threads 2] [--seconds 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from int8_vs_peers import DEFAULT_MODELS, litert_engine, model_pairs  # noqa: E402
from untuned_vs_peers import time_interleaved  # noqa: E402  (one timing method for every benchmark)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    p.add_argument(
        "--models", default=",".join(f"{a:g}-{r}" for a, r in DEFAULT_MODELS), help="ALPHA-RESOLUTION pairs (default: %(default)s)"
    )
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per engine and model (default 5)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "exported_vs_builtin.json")
    return p.parse_args()


def keras_tflite(alpha: float, resolution: int, path: Path) -> Path:
    """Keras' MobileNet v1 as a float .tflite file, exported the default way (dynamic batch, softmax)."""
    import tensorflow as tf

    model = tf.keras.applications.MobileNet(input_shape=(resolution, resolution, 3), alpha=alpha, weights=None, classes=1000)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def main() -> int:
    args = parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM starts its pool
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.files import write_json
    from tvmc_mobilenet.options import ModelOptions
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for alpha, resolution in model_pairs(args.models):
            item = f"{alpha:g}-{resolution}"
            print(f"{item}: exporting Keras' MobileNet to .tflite, building it and the built-in network…", file=sys.stderr)
            exported = keras_tflite(alpha, resolution, tmp / f"keras_{item}.tflite")
            built = {
                "builtin": build_model(BuildConfig(model=ModelOptions(alpha=alpha, resolution=resolution), no_tuning_db=True,
                                                   output=tmp / f"builtin_{item}.tar")),  # fmt: skip
                "tflite": build_model(BuildConfig(model=ModelOptions(model_file=exported), no_tuning_db=True, output=tmp / f"tflite_{item}.tar")),
            }
            engines = {}
            for name, result in built.items():
                artifact = open_artifact(result.artifact_path)
                engines[f"tvm_{name}"] = functools.partial(load_local(artifact).run, artifact.reference_input())
            engines["litert_tflite"] = litert_engine(exported, args.threads)
            print(f"{item}: timing {', '.join(engines)} in turns…", file=sys.stderr)
            stats = time_interleaved(engines, args.seconds)
            median = {name: s["median_ms"] for name, s in stats.items()}
            row = {
                "alpha": alpha,
                "resolution": resolution,
                "latency": stats,
                "exported_over_builtin": median["tvm_tflite"] / median["tvm_builtin"],
                "exported_over_litert": median["tvm_tflite"] / median["litert_tflite"],
                "build": {
                    name: {
                        "layout_transforms": r.manifest["layout"]["transforms"],
                        "kernels": len(r.manifest["kernels"]),
                        "verification": r.verification["status"],
                    }
                    for name, r in built.items()
                },
            }
            print(f"{item}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in median.items())
                  + f"; exported/built-in {row['exported_over_builtin']:.3f}", file=sys.stderr)  # fmt: skip
            rows.append(row)
    write_json(args.out, {
        "benchmark": "exported_vs_builtin",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "rows": rows,
    })  # fmt: skip
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
