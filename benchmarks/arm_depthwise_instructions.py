"""The Pi 5's int8 depthwise kernels, counted: instructions per output in the kernel's tile loop,
the widening schedule (uint8 codes, NEON multiply-adds) against the column ``sdot`` one (int8
codes less 128, schedules/cpu/depthwise_dot.py), for each depthwise layer of a MobileNet.

No Arm board is reachable from here and emulated timings say nothing, so this counts what the
compiler emits: each layer's kernel is built for ``rasp5`` (Cortex-A76) both ways, the
instructions of its parallel tile loop (the ``__tvm_parallel_lambda`` function: one tile's fully
unrolled body and its loop) are counted from the assembly, and divided by the outputs one
iteration of that loop computes (the layer's outputs over the loop's trip count). A static proxy
for the time, not a timing; layers under the parallel threshold have no tile loop and are skipped.

    python benchmarks/arm_depthwise_instructions.py [--alpha 1.0] [--resolution 224] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from untuned_vs_peers import results_header  # noqa: E402  (the results files' opening fields)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--out", type=Path, default=HERE / "results" / "arm_depthwise_instructions.json")
    args = p.parse_args()

    from tvmc_mobilenet.files import write_json
    from tvmc_mobilenet.model.spec import LayerKind, ModelConfig, layer_specs
    from tvmc_mobilenet.targets.registry import resolve_target

    target = resolve_target("rasp5").tvm_target()
    layers = layer_specs(ModelConfig(alpha=args.alpha, resolution=args.resolution))
    shapes = sorted({(s.in_channels, s.in_size, s.stride) for s in layers if s.kind == LayerKind.DEPTHWISE}, key=lambda shape: (-shape[1], shape[0]))
    rows = []
    for channels, size, stride in shapes:
        row = {"channels": channels, "size": size, "stride": stride}
        for form in ("widening", "column_sdot"):
            counted = tile_loop_instructions(channels, size, stride, form == "column_sdot", target)
            if counted is None:
                break
            row[form] = counted
        if "column_sdot" in row:
            row["ratio"] = row["widening"]["per_output"] / row["column_sdot"]["per_output"]
            rows.append(row)
            print(
                f"{channels}×{size}×{size}/s{stride}: widening {row['widening']['per_output']:.1f}, "
                f"column sdot {row['column_sdot']['per_output']:.1f} instructions per output ({row['ratio']:.2f}×)",
                file=sys.stderr,
            )
        else:
            print(f"{channels}×{size}×{size}/s{stride}: no tile loop (one core), skipped", file=sys.stderr)
    write_json(args.out, {**results_header("arm_depthwise_instructions", None), "target": "rasp5", "alpha": args.alpha, "resolution": args.resolution, "layers": rows})
    return 0


def tile_loop_instructions(channels: int, size: int, stride: int, column: bool, target) -> dict | None:
    """{instructions, outputs per iteration, per_output} of the layer's scheduled kernel for
    ``target``, or None when it has no parallel tile loop."""
    import numpy as np
    import tvm
    from tvm import relax, tirx

    from tvmc_mobilenet.compiler.passes import legalize_and_fuse, schedule
    from tvmc_mobilenet.compiler.quantize import _depthwise_on_codes_less_128

    weight = np.random.default_rng(0).integers(-127, 128, (3, 3, 1, channels), dtype=np.int8)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, size, size, channels), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            if column:  # as the quantized graph writes it for sdot: a fourth, zero, kernel row
                four_rows = np.concatenate([weight, np.zeros_like(weight[:1])])
                acc = bb.emit_te(_depthwise_on_codes_less_128, x, relax.const(four_rows), stride, (1, 1, 2, 1), primfunc_name_hint="conv2d")
            else:
                acc = relax.op.nn.conv2d(x, relax.const(weight), strides=stride, padding=1, groups=channels,
                                         data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32")  # fmt: skip
            scaled = relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(np.float32(0.01)))
            out = bb.emit_output(relax.op.astype(relax.op.clip(relax.op.round(scaled), 0, 255), "uint8"))
        bb.emit_func_output(out)
    scheduled = schedule(legalize_and_fuse(bb.get(), target), target)
    (kernel,) = [
        f for gv, f in scheduled.functions.items() if isinstance(f, tirx.PrimFunc) and "conv2d" in gv.name_hint and not gv.name_hint.endswith("weight_prepack")
    ]
    trips = [int(n) for n in re.findall(r"in T\.parallel\((?:T\.int64\()?(\d+)", kernel.script())]
    if not trips:
        return None
    assembly = tvm.tirx.build(tvm.IRModule({"main": kernel.with_attr("global_symbol", "main")}), target=target).inspect_source("asm")
    lambdas = re.findall(r"^((?:\.L)?__tvm_parallel_lambda[\w.]*):\n(.*?)(?=^\.Lfunc_end)", assembly, flags=re.S | re.M)
    instructions = sum(1 for _, body in lambdas for line in body.splitlines() if line.startswith("\t") and not line.startswith("\t."))
    out_size = (size + 2 - 3) // stride + 1
    outputs = out_size * out_size * channels / trips[0]
    return {"instructions": instructions, "outputs_per_iteration": outputs, "per_output": instructions / outputs}


if __name__ == "__main__":
    raise SystemExit(main())
