"""Model definitions: one small convolutional network serves as classifier and as filter.

A model is fully described by a JSON-ready `architecture` dict (stored in checkpoints and
model cards), so that serving rebuilds exactly what training built.
"""

import torch
from torch import nn

ARCHITECTURES = ("sieve-cnn",)


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
                 dropout: float = 0.2) -> dict:
    """The JSON-ready description that `build_model` turns into a network."""
    return {
        "name": "sieve-cnn",
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
    params = {k: v for k, v in arch.items() if k != "name"}
    return SieveCNN(**params)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
