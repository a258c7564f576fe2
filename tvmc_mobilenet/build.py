"""Build: model → Relax → compiled, verified, packaged artifact.

``build_model(BuildConfig) -> BuildResult`` is the whole pipeline of ``tvmc-mobilenet build``.
Nothing is written unless every step succeeded, verification included.
"""

from __future__ import annotations

import importlib.metadata
import platform
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np

from tvmc_mobilenet import __version__
from tvmc_mobilenet.model.preprocess import image_layout
from tvmc_mobilenet.options import ModelOptions, TargetOptions
from tvmc_mobilenet.errors import BadInputError, CudaCompileError, TuningError, VerificationError
from tvmc_mobilenet.runtime.artifact import (
    FORMAT_NAME,
    FORMAT_VERSION,
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    npy_bytes,
    sha256_bytes,
    write_artifact,
)
from tvmc_mobilenet.runtime.executor import RELATIVE_TOLERANCE, compare_outputs
from tvmc_mobilenet.targets.registry import Device, Measure, ResolvedTarget, require_buildable
from tvmc_mobilenet.targets.toolchain import CudaCompiler, cuda_compiler_for

LIBRARY_FILE = "model.so"
#: What relax.transform.SplitLayoutRewritePreproc appends to a kernel whose weights it repacks.
PREPACKED_SUFFIX = "_prepacked"


@dataclass(frozen=True)
class BuildConfig:
    """Every option of one build; written into the artifact's manifest."""

    model: ModelOptions = field(default_factory=ModelOptions)
    target: TargetOptions = field(default_factory=TargetOptions)
    tuning_db: Path | None = None
    #: Do not apply the target's default tuning database (``tuning_db`` still wins when given).
    no_tuning_db: bool = False
    output: Path | None = None
    verify: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            **self.model.to_json(),
            **self.target.to_json(),
            "tuning_db": str(self.tuning_db) if self.tuning_db is not None else None,
            "no_tuning_db": self.no_tuning_db,
            "output": str(self.output) if self.output is not None else None,
            "verify": self.verify,
        }


@dataclass(frozen=True)
class BuildResult:
    artifact_path: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def verification(self) -> dict[str, Any]:
        return self.manifest["verification"]


def default_output_path(config: BuildConfig, target: ResolvedTarget) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in target.name)
    return Path.cwd() / f"{config.model.model_name}-{slug}.tar"


def build_model(config: BuildConfig, log: Callable[[str], None] = lambda _msg: None) -> BuildResult:
    """Compile, export, verify and package one model. Raises a TvmcMobilenetError on bad input."""
    started = time.time()
    target = config.target.resolve()
    requested_compiler = config.target.requested_compiler
    require_buildable(target, requested_compiler)
    # What compiles the GPU kernels, decided once (require_buildable has checked it can).
    gpu_compiler = cuda_compiler_for(str(target.target_json["arch"]), requested_compiler) if target.spec.device is Device.CUDA else None
    output = Path(config.output) if config.output is not None else default_output_path(config, target)
    if output.is_dir():
        raise BadInputError(f"output {str(output)!r} is a directory; give a file name such as model.tar")

    from tvmc_mobilenet.compiler.model_source import import_model

    database = _open_database(config, target, log)
    tvm_target = target.tvm_target()
    loaded = import_model(config.model, log, tvm_target)
    imported, mod = loaded.imported, loaded.mod
    log(f"compiling for {target.name}")
    executable, tuned, kernels, layout = _compile(mod, tvm_target, database)
    log(f"convolutions in {layout['activations']}/{layout['weights']}; {layout['transforms']} layout transforms left in the network")
    if database is not None:
        log(f"tuning database {database.path}: {tuned[0]} of {tuned[1]} kernels tuned")

    reference_input = np.random.default_rng(config.model.seed).standard_normal(imported.input_shape, dtype=np.float32)
    reference_output = np.asarray(imported.reference(reference_input), dtype=np.float32)
    tolerance = RELATIVE_TOLERANCE
    if loaded.quantized is not None:  # ±1 quantum of the int8 output, relative to the largest output
        tolerance = loaded.quantized.output_quantum * (1 + 1e-6) / max(float(np.max(np.abs(reference_output))), 1e-30)
    quantization = loaded.quantized.to_json() if loaded.quantized is not None else None

    with tempfile.TemporaryDirectory(prefix="tvmc-mobilenet-build-") as tmp:
        lib_path = Path(tmp) / LIBRARY_FILE
        if gpu_compiler is not None:
            log(f"compiling the GPU kernels with {gpu_compiler.label} for {target.target_json['arch']}")
        gpu_code = _export(executable, lib_path, target, gpu_compiler)
        library = lib_path.read_bytes()
        if config.verify and target.runs_here:
            log("verifying the exported library against " + imported.reference_framework)
            model = _load_library(lib_path, reference_input, target.spec.device)
            verification = _verify(model, reference_input, reference_output, imported.reference_framework, tolerance)
            if loaded.quantized is not None and loaded.float_reference is None:
                quantization["against_fp32"] = {"status": "skipped", "reason": "the model file holds only the int8 network"}
            elif loaded.quantized is not None:
                quantization["against_fp32"] = _compare_with_float(model, loaded, config.model.seed)
                q = quantization["against_fp32"]
                log(f"int8 against fp32 on {q['samples']} inputs: top-1 agreement {q['top1_agreement']:.0%}, SQNR {q['sqnr_db']:.1f} dB")
            del model
        else:
            why = "disabled with --no-verify" if not config.verify else _why_not_here(target)
            verification = {"status": "skipped", "reason": why, "tolerance": tolerance}

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": loaded.description,
        "input": {
            "name": imported.input_name,
            "shape": list(imported.input_shape),
            "dtype": imported.input_dtype,
            "layout": image_layout(imported.input_shape),
            "preprocess": loaded.normalisation(config.model).to_json(),
        },
        "output": {"shape": list(reference_output.shape), "dtype": str(reference_output.dtype)},
        "target": {
            "name": target.name,
            "device": target.spec.device.value,
            "tvm": target.target_json,
            "threads": target.spec.threads or target.target_json.get("num-cores"),
            "rpc_key": target.spec.rpc_key,
        },
        "library": {"file": LIBRARY_FILE, "sha256": sha256_bytes(library), "bytes": len(library), "gpu_code": gpu_code},
        "kernels": kernels,
        "layout": layout,
        "quantization": quantization,
        "reference": {
            "input": REFERENCE_INPUT,
            "output": REFERENCE_OUTPUT,
            "framework": imported.reference_framework,
        },
        "verification": verification,
        "tuning": {
            "database": str(database.path) if database else None,
            "sha256": database.sha256() if database else None,
            "kernels_tuned": tuned[0],
            "kernels_total": tuned[1],
        },
        "versions": _versions(),
        "build": {
            "config": config.to_json(),
            "seconds": round(time.time() - started, 3),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "created_unix": int(time.time()),
            "host": f"{platform.node()} {platform.machine()}",
        },
    }
    write_artifact(
        output,
        manifest,
        {LIBRARY_FILE: library, REFERENCE_INPUT: npy_bytes(reference_input), REFERENCE_OUTPUT: npy_bytes(reference_output)},
    )
    log(f"wrote {output}")
    return BuildResult(output, manifest)


def _open_database(config: BuildConfig, target: ResolvedTarget, log: Callable[[str], None]):
    """The database to apply: --tuning-db, else the target's default one if it exists, else none.

    A database with records for another target is refused when named; the default one (which a
    home directory shared between machines with different CPUs can hold) is passed over with a
    warning, and the build goes on untuned.
    """
    from tvmc_mobilenet.tuning.database import default_database_dir, open_tuning_database

    if config.tuning_db is not None:
        database = open_tuning_database(config.tuning_db)
        database.require_target(target.tvm_target())
        return database
    if config.no_tuning_db:
        return None
    default = default_database_dir(target.name)
    if not default.is_dir():
        log(f"no tuning database for {target.name} (tune with 'tvmc-mobilenet tune' to create {default}); building untuned")
        return None
    database = open_tuning_database(default)
    try:
        database.require_target(target.tvm_target())
    except TuningError as exc:
        log(f"warning: {exc}; building untuned")
        return None
    return database


def _compile(mod, tvm_target, database):
    """Compile with our pipeline; returns the executable, (kernels tuned, kernels in all), the
    kernel table (name, kind, shape, calls, argument shapes) that per-kernel profiles use and the
    layout of the convolutions (with the number of feature-map transposes left)."""
    import tvm

    from tvmc_mobilenet.compiler.passes import (
        convert_conv_layout,
        kernel_calls,
        layout_transform_count,
        legalize_and_fuse,
        lower,
        schedule,
    )
    from tvmc_mobilenet.schedules import CONV_LAYOUTS
    from tvmc_mobilenet.compiler.tasks import classify

    converted = convert_conv_layout(tvm_target)(mod)
    activations, weights = CONV_LAYOUTS.get(tvm_target.kind.name, ("NCHW", "OIHW"))
    layout = {"activations": activations, "weights": weights, "transforms": layout_transform_count(converted)}
    fused = legalize_and_fuse(converted, tvm_target)
    kernels_in_all = sum(1 for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc))
    tuned = database.count_tuned(fused, tvm_target) if database is not None else (0, kernels_in_all)
    # Classified before scheduling (which rewrites the kernels, in place for DLight's pass).
    kinds = {
        gvar.name_hint: classify(tvm.IRModule({"main": func}))
        for gvar, func in fused.functions.items()
        if isinstance(func, tvm.tirx.PrimFunc)
    }
    scheduled = schedule(fused, tvm_target, database.database if database else None)
    calls = kernel_calls(scheduled)
    kernels = []
    for called in sorted(calls):
        # A kernel whose weights are repacked at compile time is called as NAME_prepacked.
        name = called.removesuffix(PREPACKED_SUFFIX) if called not in kinds else called
        if name not in kinds:
            continue
        kind, shape = kinds[name]
        final = scheduled[called]  # it takes its weights in the repacked layout
        kernels.append(
            {
                "name": called,
                "kind": kind.value,
                "shape": shape,
                "calls": calls[called],
                "args": [[[int(d) for d in p.shape], str(p.dtype)] for p in final.params],
            }
        )
    from tvmc_mobilenet.compiler.cuda_binary import keep_cuda_source

    # CPU targets: the VM's main function compiled to machine code ("compiled" mode) rather than
    # interpreted bytecode; int8 0.25-128 0.094 → 0.090 ms here. CUDA keeps bytecode (its CUDA-graph
    # rewrite is written for it).
    exec_mode = "compiled" if tvm_target.kind.name == "llvm" else "bytecode"
    with keep_cuda_source(tvm_target):
        executable = tvm.relax.build(scheduled, tvm_target, relax_pipeline=lower(tvm_target), exec_mode=exec_mode)
    return executable, tuned, kernels, layout


def _export(executable, lib_path: Path, target: ResolvedTarget, gpu_compiler: CudaCompiler | None = None) -> dict[str, Any] | None:
    """Write the library; for a CUDA target with its kernels compiled by ``gpu_compiler``. Returns
    what GPU code the library carries (None for CPU targets)."""
    fcompile = None
    if target.spec.cross_compiler:
        from tvm.support import cc

        fcompile = cc.cross_compiler(target.spec.cross_compiler)
    if target.spec.device is not Device.CUDA:
        executable.export_library(str(lib_path), fcompile=fcompile)
        return None
    from tvmc_mobilenet.compiler.cuda_binary import CompiledCudaPacker

    packer = CompiledCudaPacker(target.tvm_target(), gpu_compiler)
    executable.export_library(str(lib_path), fcompile=fcompile, fpack_imports=packer)
    if not packer.images:
        raise CudaCompileError(f"the {target.name} library holds no compiled GPU code; refusing to write it")
    return packer.gpu_code()


def _why_not_here(target: ResolvedTarget) -> str:
    if target.spec.device is Device.CUDA and target.spec.measure is Measure.LOCAL:
        return f"this machine has no NVIDIA GPU to run the {target.name} module on"
    return f"{target.name} modules do not run on this machine"


def _load_library(lib_path: Path, data: np.ndarray, device: Device):
    """The exported library, loaded as a user would load it."""
    import tvm

    from tvmc_mobilenet.runtime.executor import LoadedModel, use_all_cores

    use_all_cores()
    dev = tvm.cuda(0) if device is Device.CUDA else tvm.cpu(0)
    return LoadedModel(tvm.runtime.load_module(str(lib_path)), dev, data.shape, str(data.dtype))


#: Inputs (of the reference distribution) on which a quantized build is compared with fp32.
FLOAT_COMPARISON_SAMPLES = 16


def _compare_with_float(model, loaded, seed: int) -> dict[str, Any]:
    """The int8 module against the fp32 network: top-1 agreement and SQNR of the logits."""
    from tvmc_mobilenet.compiler.quantize import sqnr_db

    shape = model.input_shape
    batches = max(1, FLOAT_COMPARISON_SAMPLES // shape[0])
    rng = np.random.default_rng(seed + 2)
    quantized, exact = [], []
    for _ in range(batches):
        x = rng.standard_normal(shape, dtype=np.float32)
        quantized.append(model.run(x))
        exact.append(loaded.float_reference(x))
    q, f = np.concatenate(quantized), np.concatenate(exact)
    return {
        "samples": int(len(q)),
        "inputs": "standard normal (the reference input distribution)",
        "top1_agreement": float(np.mean(np.argmax(q, axis=1) == np.argmax(f, axis=1))),
        "sqnr_db": round(sqnr_db(f, q), 2),
    }


def _verify(model, data: np.ndarray, reference: np.ndarray, framework: str, tolerance: float) -> dict[str, Any]:
    """Compare the loaded library's output with the reference framework's."""
    comparison = compare_outputs(model.run(data), reference, tolerance)
    if not comparison.passed:
        raise VerificationError(
            f"the compiled module disagrees with {framework}: max abs error {comparison.max_abs_error:.3g}, "
            f"relative {comparison.max_rel_error:.3g} > tolerance {comparison.tolerance:g}; no artifact written"
        )
    return {"status": "passed", "reference": framework, **comparison.to_json()}


def _versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "tvmc_mobilenet": __version__,
        "tvm": version("apache-tvm"),
        "tvm_ffi": version("apache-tvm-ffi"),
        "torch": version("torch"),
        "onnxruntime": version("onnxruntime"),
        "python": platform.python_version(),
    }
