"""The option groups every command's config is composed of: which model, which target, which
remote device, how to time.

Each group is a small frozen dataclass that checks its values when made, and has one click
decorator in ``cli.py``; a command's config (``BuildConfig``, ``TuneConfig``, ``SweepConfig``,
``BenchConfig``) holds the groups it takes, so an option added to a group reaches every command
that takes the group. ``to_json`` writes a group under the command-line names of its options
(``target``, ``rpc_tracker``, …), the form manifests and sweep results record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.preprocess import normalisation
from tvmc_mobilenet.model.spec import ModelConfig
from tvmc_mobilenet.targets.toolchain import CudaCompiler, parse_cuda_compiler


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value


#: Values of ``--quantize`` (compiler/quantize.py).
QUANTIZE_SCHEMES = ("int8",)
#: Calibration inputs drawn from the reference input distribution when no --calibration is given.
DEFAULT_CALIBRATION_SAMPLES = 32


@dataclass(frozen=True)
class ModelOptions:
    """The network: the built-in MobileNet (α, ρ, variant, classes, weights) or a user's ONNX or TFLite file."""

    alpha: float = 1.0
    resolution: int = 224
    variant: str = "mobilenet"
    batch: int = 1
    num_classes: int = 1000
    #: A user's ONNX or float TFLite file; replaces the built-in network (alpha/resolution/variant then unused).
    model_file: Path | None = None
    #: A PyTorch state_dict for the built-in network; default: random weights from ``seed``.
    weights: Path | None = None
    #: Seed of the random weights and of the reference input.
    seed: int = 0
    #: ``int8``: post-training static quantization (compiler/quantize.py); None: fp32.
    quantize: str | None = None
    #: Calibration inputs for ``quantize``: a folder of images or .npy arrays, or one .npy file;
    #: None: samples of the reference input distribution.
    calibration: Path | None = None
    #: How images are normalised for the model (model/preprocess.py: ``torch``, ``tf``, ``none``),
    #: recorded in the manifest and used for calibration images; None: the model source's default.
    preprocess: str | None = None

    def __post_init__(self) -> None:
        if self.preprocess is not None:
            normalisation(self.preprocess)  # a known name
        if self.quantize is not None and self.quantize not in QUANTIZE_SCHEMES:
            raise BadInputError(f"--quantize must be one of {', '.join(QUANTIZE_SCHEMES)} (or left out for fp32), got {self.quantize!r}")
        if self.calibration is not None and self.quantize is None:
            raise BadInputError("--calibration calibrates a quantized build: give --quantize int8 with it")
        if self.quantize is not None and self.model_file is not None:
            raise BadInputError(
                "--quantize applies to the built-in MobileNet; a float model file cannot be quantized by this version, "
                "and a full-integer .tflite or QDQ .onnx file builds in int8 as it is, without --quantize"
            )
        if self.model_file is not None and self.weights is not None:
            raise BadInputError("--weights applies to the built-in MobileNet; it cannot be combined with --model")
        if self.model_file is None:
            self.model_config()  # validates alpha, resolution, variant, batch, classes
        elif (self.alpha, self.resolution, self.variant, self.num_classes) != (1.0, 224, "mobilenet", 1000):
            raise BadInputError(
                "--alpha, --resolution, --variant and --classes shape the built-in network; "
                "a model file's shape comes from the file, so drop them when using --model"
            )

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            alpha=self.alpha,
            resolution=self.resolution,
            variant=self.variant,
            num_classes=self.num_classes,
            batch=self.batch,
        )

    @property
    def model_name(self) -> str:
        if self.model_file is not None:
            return Path(self.model_file).stem
        name = self.model_config().name
        return f"{name}_{self.quantize}" if self.quantize else name

    def to_json(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TargetOptions:
    """The target: a registry name, TVM tag or JSON target dict; for CUDA, the GPU and its compiler."""

    name: str = "host"
    #: GPU architecture (``sm_XX``) of a CUDA target; default: the target's, or the local GPU's.
    cuda_arch: str | None = None
    #: What compiles a CUDA target's kernels: ``nvcc`` or ``nvrtc`` (CUDA 11.8's); default: nvcc
    #: where it targets the architecture, else NVRTC 11.8.
    cuda_compiler: str | None = None

    def __post_init__(self) -> None:
        parse_cuda_compiler(self.cuda_compiler)

    @property
    def requested_compiler(self) -> CudaCompiler | None:
        return parse_cuda_compiler(self.cuda_compiler)

    def resolve(self):
        """The :class:`~tvmc_mobilenet.targets.registry.ResolvedTarget` these options name."""
        from tvmc_mobilenet.targets.registry import resolve_target

        return resolve_target(self.name, self.cuda_arch)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.name, "cuda_arch": self.cuda_arch, "cuda_compiler": self.cuda_compiler}


@dataclass(frozen=True)
class RpcOptions:
    """A remote device: through a TVM RPC tracker and a key, or an RPC server's address.

    Checked when a command connects (``RpcTarget.from_options``); all None means "here"."""

    tracker: str | None = None
    key: str | None = None
    host: str | None = None
    port: int | None = None
    #: Seconds one remote step (upload, load, a timing run) may take.
    timeout: float = 600.0

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.tracker, self.key, self.host, self.port))

    def to_json(self) -> dict[str, Any]:
        return {f"rpc_{f.name}": getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TimingOptions:
    """``repeat`` timed samples of ``number`` runs each, after ``warmup`` untimed runs."""

    repeat: int = 20
    number: int = 10
    warmup: int = 5

    def __post_init__(self) -> None:
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.repeat, self.number, self.warmup))
        if not ints or self.repeat < 1 or self.number < 1 or self.warmup < 0:
            raise BadInputError(f"timing needs repeat ≥ 1, number ≥ 1, warmup ≥ 0 (got {self.repeat}, {self.number}, {self.warmup})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def group_from_json(cls, payload: dict[str, Any]):
    """A group read back from its ``to_json`` form (e.g. a sweep.json's config)."""
    if cls is TargetOptions:
        return TargetOptions(payload.get("target", "host"), payload.get("cuda_arch"), payload.get("cuda_compiler"))
    if cls is RpcOptions:
        return RpcOptions(**{f.name: payload[f"rpc_{f.name}"] for f in fields(RpcOptions) if f"rpc_{f.name}" in payload})
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in payload.items() if k in names}
    return cls(**{k: Path(v) if k in ("model_file", "weights") and v is not None else v for k, v in values.items()})
