"""The PyTorch MobileNet v1, built from :func:`tvmc_mobilenet.model.spec.layer_specs`.

Every convolution is followed by BatchNorm and ReLU (paper, Figure 3); the classifier returns
logits and the caller applies softmax. Importing this module imports torch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.spec import LayerKind, ModelConfig, layer_specs

#: Images used to calibrate the BatchNorm statistics of randomly initialised weights.
CALIBRATION_BATCH = 4


def _conv_bn_relu(in_c: int, out_c: int, kernel: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_c, out_c, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_c),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNet v1 (Howard et al., 2017, Table 1) for one :class:`ModelConfig`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        convs = []
        fc_in = None
        for layer in layer_specs(config):
            if layer.kind is LayerKind.DEPTHWISE:
                groups = layer.in_channels
            elif layer.kind in (LayerKind.CONV, LayerKind.POINTWISE):
                groups = 1
            elif layer.kind is LayerKind.DENSE:
                fc_in = layer.in_channels
                continue
            else:
                continue
            convs.append(_conv_bn_relu(layer.in_channels, layer.out_channels, layer.kernel, layer.stride, groups))
        self.features = nn.Sequential(*convs)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(fc_in, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.fc(torch.flatten(x, 1))


def build_network(config: ModelConfig, *, seed: int = 0, weights: Path | None = None) -> MobileNetV1:
    """The network in eval mode, with weights from ``weights`` (a state_dict) or from ``seed``.

    Random weights are deterministic for a seed. Their BatchNorm statistics are calibrated on
    random images and then perturbed, so that activations keep a sane scale through all layers
    while folding BatchNorm into the convolutions is a real transformation (means, variances,
    scales and shifts all far from 0 and 1).
    """
    net = MobileNetV1(config)
    if weights is not None:
        load_state_dict(net, Path(weights))
    else:
        _init_random(net, seed)
    return net.eval()


def load_state_dict(net: MobileNetV1, path: Path) -> None:
    if not path.is_file():
        raise BadInputError(f"weights file {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise BadInputError(
            f"weights file {str(path)!r} is not a PyTorch state_dict ({type(exc).__name__}); "
            "save one with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"weights file {str(path)!r} does not hold a state_dict of tensors")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        if unexpected:
            detail.append(f"unexpected {unexpected[0]}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
        if wrong:
            k = wrong[0]
            detail.append(f"{k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}")
        raise BadInputError(
            f"weights file {str(path)!r} does not fit {net.config.name} ({'; '.join(detail)}); "
            "check --alpha, --variant and the number of classes"
        )
    net.load_state_dict(state)


@torch.no_grad()
def _init_random(net: MobileNetV1, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (1.0 / m.in_features) ** 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    # Calibrate BatchNorm statistics layer by layer on random images (cumulative average), then
    # give each BatchNorm a random affine transform.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    images = torch.randn((CALIBRATION_BATCH, 3, net.config.resolution, net.config.resolution), generator=gen)
    net(images)
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
            m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen) + 0.1)
