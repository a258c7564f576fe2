"""Analytical cost of a MobileNet: Mult-Adds and parameters per layer, totals, shares by kind.

Counted as the paper counts them (Section 3, Table 2): Mult-Adds of the convolutions and the fully
connected layer, parameters without biases and BatchNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvmc_mobilenet.model.spec import LayerKind, LayerSpec, ModelConfig, layer_specs


@dataclass(frozen=True)
class KindShare:
    kind: LayerKind
    mult_adds: int
    params: int
    mult_adds_share: float  # percent of the total
    params_share: float  # percent of the total


@dataclass(frozen=True)
class ModelCost:
    config: ModelConfig
    layers: tuple[LayerSpec, ...]

    @property
    def mult_adds(self) -> int:
        """Per image; multiply by the batch for a whole run."""
        return sum(layer.mult_adds for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def flops(self) -> int:
        """Floating-point operations of one batch (2 per Mult-Add)."""
        return 2 * self.mult_adds * self.config.batch

    def shares(self) -> list[KindShare]:
        """Mult-Adds and parameters by layer kind, in percent (kinds present in the network)."""
        total_ma, total_p = self.mult_adds, self.params
        out = []
        for kind in LayerKind:
            ma = sum(layer.mult_adds for layer in self.layers if layer.kind is kind)
            p = sum(layer.params for layer in self.layers if layer.kind is kind)
            if any(layer.kind is kind for layer in self.layers):
                out.append(KindShare(kind, ma, p, 100.0 * ma / total_ma, 100.0 * p / total_p))
        return out

    def to_json(self) -> dict:
        return {
            "model": self.config.to_json(),
            "mult_adds": self.mult_adds,
            "params": self.params,
            "layers": [
                {
                    "name": layer.name,
                    "kind": layer.kind.value,
                    "in_channels": layer.in_channels,
                    "out_channels": layer.out_channels,
                    "kernel": layer.kernel,
                    "stride": layer.stride,
                    "in_size": layer.in_size,
                    "out_size": layer.out_size,
                    "mult_adds": layer.mult_adds,
                    "params": layer.params,
                }
                for layer in self.layers
            ],
            "shares": [
                {
                    "kind": s.kind.value,
                    "mult_adds": s.mult_adds,
                    "params": s.params,
                    "mult_adds_percent": round(s.mult_adds_share, 4),
                    "params_percent": round(s.params_share, 4),
                }
                for s in self.shares()
            ],
        }


def model_cost(config: ModelConfig) -> ModelCost:
    return ModelCost(config, tuple(layer_specs(config)))
