"""Training augmentation per preset: shifts for Fashion-MNIST, torchvision's for photos.

Both work on batches of uint8 canonical images (N, C, S, S), the form `preprocess`
gives, and return the same form, so `preprocess.to_tensor` then normalises exactly
as serving does. The photo preset (RGB, image folders) follows torchvision's
classification recipe with `transforms.v2`: a random resized crop, a horizontal flip,
colour jitter and random erasing, drawn per image.
"""

import torch

from training.engine import Augment
from training.preprocess import Preprocessing


class PhotoAugment:
    """Per-image `transforms.v2` augmentation of canonical photos, seeded by a generator."""

    def __init__(self, size: int, erase: float = 0.0, scale: tuple[float, float] = (0.35, 1.0),
                 jitter: float = 0.3):
        from torchvision.transforms import v2  # torchvision only where photos are trained

        steps = [v2.RandomResizedCrop(size, scale=scale, antialias=True),
                 v2.RandomHorizontalFlip(),
                 v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter)]
        if erase:
            steps.append(v2.RandomErasing(p=erase, value=0))
        self.transform = v2.Compose(steps)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A new batch of augmented copies of `images` (N, C, S, S), uint8."""
        # transforms.v2 draws from torch's global generator: seed it from ours, and
        # leave the global state as it was.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([self.transform(image) for image in images])


def augmentation(prep: Preprocessing, erase: float) -> Augment | PhotoAugment:
    """The augmentation for a preset: photos (RGB) get `PhotoAugment`, grey images shifts,
    flips and random erasing (`engine.Augment`)."""
    if prep.mode == "RGB":
        return PhotoAugment(prep.size, erase)
    return Augment(shift=max(1, prep.size // 14), erase=erase)
