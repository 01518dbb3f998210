"""Model definitions: a small convolutional network (the default, classifier and filter
alike) and torchvision backbones (`training.backbones`) for photo domains.

A model is fully described by a JSON-ready `architecture` dict (stored in checkpoints and
model cards), so that serving rebuilds exactly what training built.
"""

from pathlib import Path

import torch
from torch import nn

from training import backbones

CNN = "sieve-cnn"
ARCHITECTURES = (CNN, *backbones.BACKBONES)
# The names `--arch` takes (config.ARCHS, read by training runs without torch), for the
# architecture names above.
ARCH_OPTIONS = {"cnn": CNN, **{name: name for name in backbones.BACKBONES}}


def _conv(inputs: int, outputs: int) -> list[nn.Module]:
    """3x3 convolution, batch norm, ReLU."""
    return [
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    ]


class SieveCNN(nn.Module):
    """A VGG-style network sized for a 2-core CPU: one conv at full size, two per later stage.

    Input (N, C, S, S) with S >= 8; the head pools to 3x3, so any input size works.
    """

    def __init__(self, in_channels: int = 1, num_outputs: int = 10, width: int = 16,
                 dropout: float = 0.2):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv(in_channels, w),
            nn.MaxPool2d(2),
            *_conv(w, 2 * w),
            *_conv(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_conv(2 * w, 4 * w),
            *_conv(4 * w, 4 * w),
            nn.AdaptiveMaxPool2d(3),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * 9, num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_outputs)."""
        return self.head(self.features(x))


def architecture(in_channels: int, num_outputs: int, width: int = 16,
                 dropout: float = 0.2, name: str = CNN) -> dict:
    """The JSON-ready description that `build_model` turns into a network."""
    if name in backbones.BACKBONES:
        return {"name": name, "in_channels": in_channels, "num_outputs": num_outputs,
                "source": "torchvision"}
    return {
        "name": CNN,
        "in_channels": in_channels,
        "num_outputs": num_outputs,
        "width": width,
        "dropout": dropout,
    }


def build_model(arch: dict) -> nn.Module:
    """Build the network an architecture dict describes; ValueError for unknown ones."""
    if arch.get("name") not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {arch.get('name')!r}; supported: {', '.join(ARCHITECTURES)}"
        )
    if arch["name"] in backbones.BACKBONES:
        return backbones.build(arch["name"], arch["in_channels"], arch["num_outputs"])
    params = {k: v for k, v in arch.items() if k not in ("name", "parameters")}
    return SieveCNN(**params)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def create(arch: dict, weights: str | None = None, freeze_backbone: bool = False) -> nn.Module:
    """`build_model`, then pretrained weights for a torchvision backbone (DEFAULT or another
    torchvision weights name, or the path of a state dict) and, when asked, a frozen
    backbone whose head alone trains. ValueError for options the architecture lacks."""
    model = build_model(arch)
    name = arch["name"]
    if name not in backbones.BACKBONES:
        if weights or freeze_backbone:
            raise ValueError(f"--weights and --freeze-backbone apply to torchvision backbones "
                             f"({', '.join(backbones.BACKBONES)}), not to {name}")
        return model
    if weights:
        state = (backbones.read_state_dict(weights) if Path(weights).is_file()
                 else backbones.fetch_state_dict(name, weights))
        backbones.load_pretrained(name, model, state, weights)
    if freeze_backbone:
        backbones.freeze(name, model)
    return model


def count_all_parameters(model: nn.Module) -> int:
    """Number of parameters, trainable or frozen."""
    return sum(p.numel() for p in model.parameters())
