"""Checkpoints: a dict with the model's architecture, weights, classes and preprocessing."""

import pickle
from pathlib import Path

import torch
from torch import nn

from training.models import build_model

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that does not exist, cannot be read, or does not fit the model."""


def save(path: Path, model: nn.Module, **fields) -> Path:
    """Write weights plus the fields that rebuild and describe the model."""
    torch.save({"format": FORMAT, "state_dict": model.state_dict(), **fields}, path)
    return path


def read(path: str | Path) -> dict:
    """Load a checkpoint dict without executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        # torch.load reports unreadable, truncated or foreign pickles as these.
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Sieve checkpoint (no state_dict in it)")
    return checkpoint


def load_into(model: nn.Module, checkpoint: dict, arch: dict, classes: list[str],
              source: str) -> None:
    """Copy checkpoint weights into `model`, or explain why they do not fit."""
    theirs = checkpoint.get("architecture")
    if theirs is not None and _shape(theirs) != _shape(arch):
        raise CheckpointError(
            f"{source} holds a {_describe(theirs)} but this run builds a {_describe(arch)}: "
            "pass the matching --width, --arch and data set"
        )
    if checkpoint.get("classes") is not None and list(checkpoint["classes"]) != list(classes):
        raise CheckpointError(
            f"{source} was trained on the classes {checkpoint['classes']}, this data set has "
            f"{classes}: fine-tuning to other classes is not supported"
        )
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{source} does not fit the model: {exc}") from exc


def build(checkpoint: dict) -> nn.Module:
    """The network a checkpoint describes, with its weights, in eval mode."""
    model = build_model(checkpoint["architecture"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(memory_format=torch.channels_last).eval()


def _shape(arch: dict) -> tuple:
    """The parts of an architecture that decide the weights' shapes."""
    return tuple(arch.get(k) for k in ("name", "in_channels", "num_outputs", "width"))


def _describe(arch: dict) -> str:
    """A short human description of an architecture."""
    if arch.get("width") is None:
        return (f"{arch.get('name')} ({arch.get('in_channels')} input channels, "
                f"{arch.get('num_outputs')} outputs)")
    return (f"{arch.get('name')} (width {arch.get('width')}, {arch.get('in_channels')} input "
            f"channels, {arch.get('num_outputs')} outputs)")
