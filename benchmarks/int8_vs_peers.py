"""int8 against the engines people deploy, measured in one run on this machine, engines taking turns.

For each (α, resolution): our int8 build (``build --quantize int8``, untuned; also tuned with
``--trials N``) and our fp32 build against LiteRT (XNNPACK) int8 and fp32 and ONNX Runtime int8
(QDQ), every engine on the same number of threads. Medians and ratios go to a JSON file.

The peers' models are made here, as their users make them:

* LiteRT: Keras' ``MobileNet`` (v1, same α and resolution, ``weights=None``: the same layers and
  Mult-Adds, random weights) converted by TensorFlow's ``TFLiteConverter``, once as fp32 and once
  full-integer int8 (int8 input and output, a representative dataset of 32 random inputs);
* ONNX Runtime: our PyTorch network exported to ONNX and quantized by
  ``onnxruntime.quantization.quantize_static`` (QDQ, int8 weights per channel, uint8 activations).

TensorFlow and LiteRT are benchmark dependencies, not the tool's:

    pip install -e '.[peers]'        # tensorflow-cpu and ai-edge-litert
    python benchmarks/int8_vs_peers.py [--models 1-224,0.5-160,0.25-128] [--trials 0] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, UTC
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from untuned_vs_peers import time_interleaved  # noqa: E402  (one timing method for every benchmark)

DEFAULT_MODELS = [(1.0, 224), (0.5, 160), (0.25, 128)]
CALIBRATION_SAMPLES = 32


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    p.add_argument(
        "--models", default=",".join(f"{a:g}-{r}" for a, r in DEFAULT_MODELS), help="ALPHA-RESOLUTION pairs (default: %(default)s)"
    )
    p.add_argument(
        "--trials", type=int, default=0, help="also tune our int8 build with this many trials per model (default 0: untuned only)"
    )
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per engine and model (default 5)")
    p.add_argument("--work-dir", type=Path, default=HERE / "work" / "int8", help="tuning databases (kept, so reruns continue)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "int8_vs_peers.json")
    return p.parse_args()


def model_pairs(text: str) -> list[tuple[float, int]]:
    """``--models`` (``ALPHA-RESOLUTION,…``) as (α, resolution) pairs."""
    pairs = []
    for item in text.split(","):
        alpha, resolution = item.split("-")
        pairs.append((float(alpha), int(resolution)))
    return pairs


def litert_models(alpha: float, resolution: int, tmp: Path) -> dict[str, Path]:
    """Keras' MobileNet v1 as fp32 and full-integer int8 .tflite files (TensorFlow's converter)."""
    import numpy as np
    import tensorflow as tf

    model = tf.keras.applications.MobileNet(input_shape=(resolution, resolution, 3), alpha=alpha, weights=None, classes=1000)
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal((1, resolution, resolution, 3), dtype=np.float32) for _ in range(CALIBRATION_SAMPLES)]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    paths = {"fp32": tmp / "fp32.tflite", "int8": tmp / "int8.tflite"}
    paths["fp32"].write_bytes(converter.convert())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    paths["int8"].write_bytes(converter.convert())
    return paths


def litert_engine(path: Path, threads: int):
    """A LiteRT interpreter (XNNPACK, its default CPU delegate). Like our modules' and ONNX
    Runtime's calls, each call takes its input in and its output out (``set_tensor``, ``invoke``,
    ``get_tensor``): ``invoke`` alone would leave out the copies the others include."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    data = np.random.default_rng(1).standard_normal(detail["shape"]).astype(np.float32)
    if detail["dtype"] == np.int8:
        scale, zero = detail["quantization"]
        data = np.clip(np.round(data / scale) + zero, -128, 127).astype(np.int8)
    output = interpreter.get_output_details()[0]["index"]

    def call():
        interpreter.set_tensor(detail["index"], data)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return call


def ort_int8_engine(net, data, tmp: Path, threads: int):
    """Our network through ONNX, quantized by ONNX Runtime's own static QDQ quantizer."""
    import numpy as np
    import onnxruntime
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32, int8 = tmp / "fp32.onnx", tmp / "int8.onnx"
    with torch.no_grad():
        torch.onnx.export(net, (torch.from_numpy(data),), str(fp32), input_names=["input"], output_names=["logits"], dynamo=False)
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = [rng.standard_normal(data.shape, dtype=np.float32) for _ in range(CALIBRATION_SAMPLES)]

        def get_next(self):
            return {"input": self.left.pop()} if self.left else None

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)  # fmt: skip
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    return functools.partial(session.run, None, {"input": data})


def main() -> int:
    args = parse_args()
    # Thread counts must be fixed before the engines start their pools.
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import torch

    from tvmc_mobilenet.build import BuildConfig, build_model
    from tvmc_mobilenet.options import ModelOptions
    from tvmc_mobilenet.model.cost import model_cost
    from tvmc_mobilenet.model.network import build_network
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local
    from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model

    torch.set_num_threads(args.threads)
    try:
        import ai_edge_litert  # noqa: F401
        import tensorflow  # noqa: F401

        litert_missing = None
    except ImportError as exc:
        litert_missing = f"LiteRT peers skipped: {exc} (pip install -e '.[peers]')"
        print(litert_missing, file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for alpha, resolution in model_pairs(args.models):
            item = f"{alpha:g}-{resolution}"
            model_dir = tmp / item
            model_dir.mkdir()
            int8 = ModelOptions(alpha=alpha, resolution=resolution, quantize="int8")
            fp32 = ModelOptions(alpha=alpha, resolution=resolution)
            print(f"{item}: building our int8 and fp32 modules…", file=sys.stderr)
            built = {
                "tvm_int8": build_model(BuildConfig(model=int8, no_tuning_db=True, output=model_dir / "int8.tar")),
                "tvm_fp32": build_model(BuildConfig(model=fp32, no_tuning_db=True, output=model_dir / "fp32.tar")),
            }
            if args.trials:
                work = args.work_dir / int8.model_name
                print(f"{item}: tuning our int8 module to {args.trials} trials in {work}…", file=sys.stderr)
                tune_model(TuneConfig(model=int8, trials=args.trials, work_dir=work))
                built["tvm_int8_tuned"] = build_model(BuildConfig(model=int8, tuning_db=work, output=model_dir / "int8_tuned.tar"))
            data = open_artifact(built["tvm_int8"].artifact_path).reference_input()
            engines = {}
            for name, result in built.items():
                engines[name] = functools.partial(load_local(open_artifact(result.artifact_path)).run, data)
            print(f"{item}: quantizing for ONNX Runtime…", file=sys.stderr)
            net = build_network(fp32.model_config(), seed=0)
            engines["onnxruntime_int8"] = ort_int8_engine(net, data, model_dir, args.threads)
            if litert_missing is None:
                print(f"{item}: converting Keras' MobileNet with TensorFlow's TFLite converter…", file=sys.stderr)
                for precision, path in litert_models(alpha, resolution, model_dir).items():
                    engines[f"litert_{precision}"] = litert_engine(path, args.threads)
            print(f"{item}: timing {', '.join(engines)} in turns…", file=sys.stderr)
            stats = time_interleaved(engines, args.seconds)
            median = {name: s["median_ms"] for name, s in stats.items()}
            row = {
                "alpha": alpha,
                "resolution": resolution,
                "mult_adds": model_cost(fp32.model_config()).mult_adds,
                "latency": stats,
                "int8_over_our_fp32": median["tvm_int8"] / median["tvm_fp32"],
                "int8_over_onnxruntime_int8": median["tvm_int8"] / median["onnxruntime_int8"],
                "int8_against_fp32": built["tvm_int8"].manifest["quantization"]["against_fp32"],
            }
            if "litert_int8" in median:
                row["int8_over_litert_int8"] = median["tvm_int8"] / median["litert_int8"]
                row["litert_int8_over_litert_fp32"] = median["litert_int8"] / median["litert_fp32"]
            if "tvm_int8_tuned" in median:
                row["tuned_int8_over_our_fp32"] = median["tvm_int8_tuned"] / median["tvm_fp32"]
                if "litert_int8" in median:
                    row["tuned_int8_over_litert_int8"] = median["tvm_int8_tuned"] / median["litert_int8"]
            print(json.dumps({k: v for k, v in row.items() if k != "latency"}), file=sys.stderr)
            print(f"{item}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in median.items()), file=sys.stderr)
            rows.append(row)
    payload = {
        "benchmark": "int8_vs_peers",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "trials": args.trials,
        "litert": litert_missing or "ai-edge-litert (XNNPACK) on TensorFlow-converted Keras MobileNet v1",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "rows": rows,
    }
    from tvmc_mobilenet.files import write_json

    write_json(args.out, payload)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
