"""torchvision backbones (ResNet-18, MobileNetV3-Small) as Sieve classifiers and filters.

A backbone is built from `torchvision.models` without weights, with its first
convolution fitted to the input's channels (1 for grey, 3 for colour) and its
classifier head replaced by one with the domain's outputs. Pretrained weights come in
afterwards through `load_pretrained`: torchvision's weights API (`DEFAULT` or a named
enum value such as `IMAGENET1K_V1`, downloaded once into the torch cache) or a local
state-dict file. The ImageNet head is dropped, and for grey inputs the first
convolution's RGB filters are summed into one channel.
"""

import logging
import pickle
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backbone:
    """Where a torchvision model keeps its first convolution and its classifier head."""

    first_conv: str  # dotted module path of the first convolution
    head: str  # dotted module path of the last Linear layer


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(first_conv="conv1", head="fc"),
    "mobilenet_v3_small": Backbone(first_conv="features.0.0", head="classifier.3"),
}


class WeightsError(ValueError):
    """Pretrained weights that cannot be found, fetched or fitted to the backbone."""


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """The module holding the submodule at dotted `path`, and the submodule's own name."""
    *parents, name = path.split(".")
    return model.get_submodule(".".join(parents)) if parents else model, name


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put `module` at dotted `path` inside `model`."""
    parent, name = _parent(model, path)
    setattr(parent, name, module)


def build(name: str, in_channels: int, num_outputs: int) -> nn.Module:
    """A randomly initialised backbone with `in_channels` inputs and `num_outputs` logits."""
    from torchvision import models  # imported only when a backbone is built

    spec = BACKBONES[name]
    model = models.get_model(name, weights=None)
    conv = model.get_submodule(spec.first_conv)
    if in_channels != conv.in_channels:
        _replace(model, spec.first_conv, nn.Conv2d(
            in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            bias=conv.bias is not None))
    head = model.get_submodule(spec.head)
    _replace(model, spec.head, nn.Linear(head.in_features, num_outputs))
    return model


def head_parameters(name: str, model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the backbone's classifier head."""
    return list(model.get_submodule(BACKBONES[name].head).parameters())


def freeze(name: str, model: nn.Module) -> None:
    """Train the head only: every other parameter stops taking gradients."""
    head = {id(p) for p in head_parameters(name, model)}
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in head


def fetch_state_dict(name: str, weights: str) -> dict[str, torch.Tensor]:
    """The state dict of torchvision weights `weights` (DEFAULT or an enum value's name)
    for backbone `name`, downloaded into the torch cache ($TORCH_HOME) when not there."""
    from torchvision import models

    enum = models.get_model_weights(name)
    try:
        chosen = enum[weights.upper()] if weights.upper() != "DEFAULT" else enum.DEFAULT
    except KeyError as exc:
        raise WeightsError(f"--weights {weights}: no such file, and not a torchvision "
                           f"weights name for {name} (DEFAULT, "
                           f"{', '.join(w.name for w in enum)})") from exc
    try:
        return chosen.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        # No network, a failed download or a damaged file in the cache.
        raise WeightsError(
            f"could not load {chosen} ({exc}); on an offline host fetch them on a connected "
            f"one with `python -c \"from torchvision.models import get_model_weights; "
            f"get_model_weights('{name}').{chosen.name}.get_state_dict()\"` and copy the "
            f"torch cache ({torch.hub.get_dir()}), or pass --weights PATH to a state dict"
        ) from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file (torch.save of `model.state_dict()`), read without code."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        # torch.load reports unreadable, truncated or foreign pickles as these.
        raise WeightsError(f"{path} is not a readable PyTorch state dict: {exc}") from exc
    if isinstance(saved, dict) and isinstance(saved.get("state_dict"), dict):
        saved = saved["state_dict"]
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in saved.values()):
        raise WeightsError(f"{path} holds no state dict (a dict of tensor names to tensors)")
    return saved


def load_pretrained(name: str, model: nn.Module, state: dict[str, torch.Tensor],
                    source: str) -> None:
    """Copy pretrained weights into `model`, all but the head; WeightsError when they do
    not belong to this backbone."""
    spec = BACKBONES[name]
    head = {f"{spec.head}.{k}" for k in model.get_submodule(spec.head).state_dict()}
    state = {k: v for k, v in state.items() if k not in head}
    conv_key = f"{spec.first_conv}.weight"
    wanted = model.get_submodule(spec.first_conv).in_channels
    if conv_key in state and state[conv_key].shape[1] != wanted and wanted == 1:
        state[conv_key] = state[conv_key].sum(dim=1, keepdim=True)  # RGB filters to grey
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - head)
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or unexpected or misshapen:
        raise WeightsError(
            f"{source} does not hold {name} weights: "
            + "; ".join(f"{what} {_few(keys)}" for what, keys in (
                ("missing", missing), ("unexpected", unexpected), ("other shapes", misshapen))
                if keys))
    model.load_state_dict(state, strict=False)
    log.info("loaded pretrained %s weights from %s (head left random)", name, source)


def _few(keys: list[str], shown: int = 4) -> str:
    """Up to `shown` key names and how many more."""
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more
