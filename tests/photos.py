"""Test helpers for photo domains: state dicts of torchvision backbones that the tests
write themselves, as a download would leave them (nothing is downloaded)."""

from pathlib import Path

import torch
from torchvision import models


def write_state_dict(path: Path, name: str = "resnet18", seed: int = 0) -> Path:
    """An ImageNet-shaped state dict of torchvision's `name` (random weights), as
    `torch.save(model.state_dict())` writes a downloaded one."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(models.get_model(name, weights=None).state_dict(), path)
    return path
