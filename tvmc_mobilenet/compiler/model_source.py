"""Which network a command works on: the built-in MobileNet (α, ρ, variant) or a user's ONNX file.

:class:`ModelOptions` is the part of every command's config that names the model; ``build`` and
``tune`` extend it. :func:`import_model` turns it into a Relax module with BatchNorm folded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.spec import ModelConfig


@dataclass(frozen=True)
class ModelOptions:
    alpha: float = 1.0
    resolution: int = 224
    variant: str = "mobilenet"
    batch: int = 1
    num_classes: int = 1000
    #: A user's ONNX file; replaces the built-in network (alpha/resolution/variant then unused).
    model_file: Path | None = None
    #: A PyTorch state_dict for the built-in network; default: random weights from ``seed``.
    weights: Path | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model_file is not None and self.weights is not None:
            raise BadInputError("--weights applies to the built-in MobileNet; it cannot be combined with --model")
        if self.model_file is None:
            self.model_config()  # validates alpha, resolution, variant, batch, classes
        elif (self.alpha, self.resolution, self.variant, self.num_classes) != (1.0, 224, "mobilenet", 1000):
            raise BadInputError(
                "--alpha, --resolution, --variant and --classes shape the built-in network; "
                "an ONNX model's shape comes from its file, so drop them when using --model"
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
        return self.model_config().name

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class LoadedModel:
    """A model imported into Relax, simplified for inference, with its description."""

    imported: Any  # frontend.ImportedModel
    mod: Any  # the simplified Relax IRModule
    #: What the manifest and reports say about the model.
    description: dict[str, Any]


def import_model(options: ModelOptions, log: Callable[[str], None] = lambda _msg: None) -> LoadedModel:
    """Build or read the network, import it into Relax and fold BatchNorm."""
    from tvmc_mobilenet.compiler.frontend import import_onnx, import_pytorch
    from tvmc_mobilenet.compiler.passes import simplify_for_inference
    from tvmc_mobilenet.runtime.artifact import sha256_bytes

    if options.model_file is not None:
        path = Path(options.model_file)
        log(f"importing ONNX model {path}")
        imported = import_onnx(path, batch=options.batch if options.batch != 1 else None)
        description: dict[str, Any] = {
            "source": "onnx",
            "file": path.name,
            "sha256": sha256_bytes(path.read_bytes()),
            "name": options.model_name,
        }
    else:
        from tvmc_mobilenet.model.network import build_network

        config = options.model_config()
        weights = f"state_dict {options.weights}" if options.weights else f"random, seed {options.seed}"
        log(f"building {config.name} in PyTorch ({weights})")
        net = build_network(config, seed=options.seed, weights=options.weights)
        log("exporting with torch.export and importing into TVM Relax")
        imported = import_pytorch(net, config.input_shape)
        description = {"source": "builtin", "name": config.name, **config.to_json(), "weights": weights}
    return LoadedModel(imported, simplify_for_inference(imported.mod), description)
