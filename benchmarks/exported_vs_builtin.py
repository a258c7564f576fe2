"""A user's exported MobileNet against the built-in one: same α and resolution, both built by this
tool (untuned, or each tuned to ``--trials``), LiteRT running the exported file alongside, engines taking turns in one run.

The exported models are made as users make theirs, from Keras' ``MobileNet`` (v1,
``weights=None``: the same layers and Mult-Adds, random weights): TensorFlow's
``TFLiteConverter`` to float and to full-integer int8 ``.tflite`` (the int8 one read onto our int8
kernels), and tf2onnx to ONNX (NHWC input, ReLU6 as Clip). Issue 16's targets: the float exports
within 1.05× of the built-in network's latency, the int8 export at least 2× faster than the
float one. Each row also records what the build left
of the exports (layout transforms, kernels), the reason when a target is missed.

    pip install -e '.[test]'   # tensorflow-cpu, tf2onnx, ai-edge-litert, tflite
    python benchmarks/exported_vs_builtin.py [--models 1-224,0.5-160,0.25-128] [--threads 2] [--seconds 5] [--trials N]
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
    p.add_argument("--trials", type=int, default=0, help="tune every build to this many trials first, each into its own database (default 0: untuned)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "exported_vs_builtin.json")
    return p.parse_args()


def keras_exports(alpha: float, resolution: int, tmp: Path) -> dict[str, Path]:
    """Keras' MobileNet v1 as a float .tflite file, exported the default way (dynamic batch,
    softmax), as a full-integer one (TFLITE_BUILTINS_INT8, int8 input and output) and as ONNX
    (tf2onnx), from the tests' Keras model (tests/compiler/tflite_models.py: random weights whose
    activations keep their size, as a trained network's do)."""
    sys.path.insert(0, str(HERE.parent))
    from tests.compiler.tflite_models import keras_mobilenet, keras_mobilenet_onnx, tflite_bytes

    paths = {"float": tmp / f"keras_{alpha:g}_{resolution}.tflite", "int8": tmp / f"keras_{alpha:g}_{resolution}_int8.tflite"}
    paths["onnx"] = keras_mobilenet_onnx(tmp / f"keras_{alpha:g}_{resolution}.onnx", alpha=alpha, resolution=resolution)
    paths["float"].write_bytes(tflite_bytes(keras_mobilenet(alpha=alpha, resolution=resolution, fixed_batch=False, softmax=True), resolution))
    int8_model = keras_mobilenet(alpha=alpha, resolution=resolution, softmax=True)  # the converter's int8 path wants a fixed batch
    paths["int8"].write_bytes(tflite_bytes(int8_model, resolution, int8=True))
    return paths


def onnxruntime_engine(path: Path, threads: int):
    """ONNX Runtime running the exported ONNX file, input in and output out."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    given = session.get_inputs()[0]
    data = np.random.default_rng(1).standard_normal(given.shape).astype(np.float32)
    return functools.partial(session.run, None, {given.name: data})


def main() -> int:
    args = parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM starts its pool
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.files import write_json
    from tvmc_mobilenet.options import ModelOptions
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local
    from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for alpha, resolution in model_pairs(args.models):
            item = f"{alpha:g}-{resolution}"
            print(f"{item}: exporting Keras' MobileNet to .tflite, building it and the built-in network…", file=sys.stderr)
            exported = keras_exports(alpha, resolution, tmp)

            def build(name: str, model: ModelOptions):
                """Untuned, or with ``--trials`` tuned into a database of its own first."""
                database = None
                if args.trials:
                    database = tmp / f"db_{name}_{item}"
                    print(f"{item}: tuning {name} to {args.trials} trials…", file=sys.stderr)
                    tune_model(TuneConfig(model=model, trials=args.trials, work_dir=database))
                config = BuildConfig(model=model, tuning_db=database, no_tuning_db=database is None, output=tmp / f"{name}_{item}.tar")
                return build_model(config)

            built = {
                "builtin": build("builtin", ModelOptions(alpha=alpha, resolution=resolution)),
                "tflite": build("tflite", ModelOptions(model_file=exported["float"])),
                "tflite_int8": build("tflite_int8", ModelOptions(model_file=exported["int8"])),
                "onnx": build("onnx", ModelOptions(model_file=exported["onnx"])),
            }
            engines = {}
            for name, result in built.items():
                artifact = open_artifact(result.artifact_path)
                engines[f"tvm_{name}"] = functools.partial(load_local(artifact).run, artifact.reference_input())
            engines["litert_tflite"] = litert_engine(exported["float"], args.threads)
            engines["litert_tflite_int8"] = litert_engine(exported["int8"], args.threads)
            engines["onnxruntime_onnx"] = onnxruntime_engine(exported["onnx"], args.threads)
            print(f"{item}: timing {', '.join(engines)} in turns…", file=sys.stderr)
            stats = time_interleaved(engines, args.seconds)
            median = {name: s["median_ms"] for name, s in stats.items()}
            row = {
                "alpha": alpha,
                "resolution": resolution,
                "latency": stats,
                "exported_over_builtin": median["tvm_tflite"] / median["tvm_builtin"],
                "onnx_export_over_builtin": median["tvm_onnx"] / median["tvm_builtin"],
                "exported_over_litert": median["tvm_tflite"] / median["litert_tflite"],
                "int8_speedup_over_float_export": median["tvm_tflite"] / median["tvm_tflite_int8"],
                "int8_export_over_litert_int8": median["tvm_tflite_int8"] / median["litert_tflite_int8"],
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
                  + f"; .tflite/built-in {row['exported_over_builtin']:.3f}, .onnx/built-in {row['onnx_export_over_builtin']:.3f}, int8 export {row['int8_speedup_over_float_export']:.2f}x"
                  + " faster than the float one", file=sys.stderr)  # fmt: skip
            rows.append(row)
    write_json(args.out, {
        "benchmark": "exported_vs_builtin",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "trials": args.trials,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "rows": rows,
    })  # fmt: skip
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
