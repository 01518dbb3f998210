"""Training and evaluation loops, shared by the classifier and the filter.

Data arrive as uint8 canonical tensors (N, C, S, S); augmentation runs on whole batches
of them, then `preprocess.to_tensor` normalises exactly as serving does.
"""

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.preprocess import Preprocessing, to_tensor


@dataclass
class Augment:
    """Batch augmentation on uint8 images: shifts, horizontal flips, random erasing."""

    shift: int = 2
    flip: bool = True
    erase: float = 0.5

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A new batch of augmented copies of `images` (N, C, S, S)."""
        n, _, _size, _ = images.shape
        out = _shift(images, self.shift, generator) if self.shift else images.clone()
        if self.flip:
            flip = torch.rand(n, generator=generator) < 0.5
            out[flip] = out[flip].flip(-1)
        if self.erase:
            out = _erase(out, self.erase, generator)
        return out


def _shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pad` pixels, filling with black."""
    n, channels, size, _ = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    base = torch.arange(size)
    rows = (base[None] + dy[:, None])[:, None, :, None]
    cols = (base[None] + dx[:, None])[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(channels)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def _erase(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Black out one random rectangle (1/7 to 1/2 of the side) in a fraction p of images."""
    n, _, size, _ = images.shape
    lo, hi = max(1, size // 7), max(2, size // 2)
    chosen = torch.rand(n, generator=generator) < p
    height = torch.randint(lo, hi, (n,), generator=generator)[:, None, None]
    width = torch.randint(lo, hi, (n,), generator=generator)[:, None, None]
    top = torch.randint(0, size, (n,), generator=generator)[:, None, None]
    left = torch.randint(0, size, (n,), generator=generator)[:, None, None]
    yy = torch.arange(size)[None, :, None]
    xx = torch.arange(size)[None, None, :]
    mask = (yy >= top) & (yy < top + height) & (xx >= left) & (xx < left + width)
    mask &= chosen[:, None, None]
    return images.masked_fill(mask[:, None], 0)


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator:
    """Index batches over range(n), shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@dataclass
class Budget:
    """Stops training and drives the learning-rate schedule by steps or by wall time."""

    total_steps: int
    seconds: float | None = None
    started: float = field(default_factory=time.monotonic)
    step: int = 0

    def progress(self) -> float:
        """Fraction of the budget used, in [0, 1]."""
        by_steps = self.step / max(1, self.total_steps)
        if self.seconds is None:
            return min(1.0, by_steps)
        return min(1.0, (time.monotonic() - self.started) / self.seconds)

    def exhausted(self) -> bool:
        """True once the step count or the time budget is spent."""
        return self.progress() >= 1.0

    def seconds_left(self) -> float | None:
        """Estimated training seconds left, from the pace so far (None before any step)."""
        done = self.progress()
        if done <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return max(0.0, elapsed * (1 - done) / done)


def one_cycle(progress: float, peak: float, warmup: float = 0.2) -> float:
    """Learning rate: linear warm-up to `peak`, then cosine decay to zero."""
    if progress < warmup:
        return peak * (0.04 + 0.96 * progress / warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))


@dataclass
class EpochResult:
    """Mean loss and accuracy over the batches of one epoch."""

    loss: float
    accuracy: float
    seconds: float
    images: int


def train_one_epoch(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                    optimizer: torch.optim.Optimizer, budget: Budget, peak_lr: float,
                    prep: Preprocessing, augment: Augment, generator: torch.Generator,
                    batch_size: int, label_smoothing: float = 0.0,
                    description: str = "", device: str = "cpu",
                    clip_grad: float = 0.0,
                    on_step: Callable[[float, float], None] | None = None) -> EpochResult:
    """One pass over the data (or until the budget runs out), with a progress bar.

    `on_step(loss, accuracy)` is called after every step with the batch's figures; an
    exception it raises stops training there (that is how a run is cancelled).
    """
    model.train()
    started = time.monotonic()
    total_loss, correct, seen = 0.0, 0, 0
    steps = math.ceil(len(images) / batch_size)
    with tqdm(total=steps, desc=description, leave=False, disable=None) as bar:
        for idx in batches(len(images), batch_size, generator):
            if budget.exhausted():
                break
            for group in optimizer.param_groups:
                group["lr"] = one_cycle(budget.progress(), peak_lr)
            x = to_tensor(augment(images[idx], generator), prep).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            y = targets[idx].to(device)
            logits = model(x)
            loss = _loss(logits, y, label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            budget.step += 1
            batch_loss, batch_correct = loss.item(), int((_decide(logits) == y).sum())
            total_loss += batch_loss * len(idx)
            correct += batch_correct
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(loss=f"{batch_loss:.3f}")
            if on_step is not None:
                on_step(batch_loss, batch_correct / len(idx))
    return EpochResult(total_loss / max(seen, 1), correct / max(seen, 1),
                       time.monotonic() - started, seen)


def _loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy for classifiers, binary cross-entropy for a one-output filter."""
    if logits.shape[1] == 1:
        target = targets.float() * (1 - smoothing) + 0.5 * smoothing
        return F.binary_cross_entropy_with_logits(logits[:, 0], target)
    return F.cross_entropy(logits, targets, label_smoothing=smoothing)


def _decide(logits: torch.Tensor) -> torch.Tensor:
    """Predicted labels: argmax, or logit > 0 for a one-output model."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, prep: Preprocessing,
            batch_size: int = 1000, flip_tta: bool = True, device: str = "cpu") -> torch.Tensor:
    """Probabilities for uint8 canonical images: (N, classes), or (N,) for a filter."""
    if model.training:  # eval() walks every module: not again on each call when serving
        model.eval()
    outputs = []
    for idx in batches(len(images), batch_size):
        x = to_tensor(images[idx], prep).to(device).contiguous(memory_format=torch.channels_last)
        outputs.append(_probabilities(model, x, flip_tta).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def _probabilities(model: nn.Module, x: torch.Tensor, flip_tta: bool) -> torch.Tensor:
    """Softmax (or sigmoid) of the model, averaged with its mirror image when asked."""
    logits = model(x)
    if flip_tta:
        logits = torch.stack([logits, model(x.flip(-1))])
    else:
        logits = logits[None]
    if logits.shape[-1] == 1:
        return torch.sigmoid(logits[..., 0]).mean(0)
    return logits.softmax(-1).mean(0)


def evaluate(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
             prep: Preprocessing, flip_tta: bool = True, device: str = "cpu") -> dict:
    """Loss and accuracy of a model on a split."""
    probs = predict(model, images, prep, flip_tta=flip_tta, device=device)
    if probs.dim() == 1:
        loss = F.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), targets.float())
        accuracy = ((probs > 0.5).long() == targets).float().mean()
    else:
        loss = F.nll_loss(probs.clamp_min(1e-7).log(), targets)
        accuracy = (probs.argmax(1) == targets).float().mean()
    return {"loss": float(loss), "accuracy": float(accuracy), "probabilities": probs}
