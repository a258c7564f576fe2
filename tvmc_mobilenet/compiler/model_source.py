"""The network a command works on, imported: the built-in MobileNet (α, ρ, variant) or a user's
ONNX file, as :class:`~tvmc_mobilenet.options.ModelOptions` names it, turned into a Relax module
with BatchNorm folded (:func:`import_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from tvmc_mobilenet.options import ModelOptions


@dataclass
class PreparedModel:
    """A model imported into Relax, simplified for inference, with its description."""

    imported: Any  # frontend.ImportedModel
    mod: Any  # the simplified Relax IRModule
    #: What the manifest and reports say about the model.
    description: dict[str, Any]


def import_model(options: ModelOptions, log: Callable[[str], None] = lambda _msg: None) -> PreparedModel:
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
    return PreparedModel(imported, simplify_for_inference(imported.mod), description)
