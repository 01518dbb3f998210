"""Serving-side prediction: load a published model and run images through it.

The same code path serves the workers, `python -m training.evaluate`, the tests and the
SageMaker inference handler (which packages this module without the model store):
bytes in, the shared preprocessing, one batched forward pass, plain dicts out.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from sieve.images import release_memory
from training import checkpoint
from training.engine import predict
from training.preprocess import Preprocessing, decode, to_canonical

# After a batch of more encoded bytes than this, freed memory goes back to the system.
LARGE_BATCH_BYTES = 256 * 1024

if TYPE_CHECKING:
    from sieve.store import Store


@dataclass
class Predictor:
    """A loaded model with its card, ready for batched inference on the CPU."""

    name: str
    version: str
    model: nn.Module
    card: dict
    preprocessing: Preprocessing

    @classmethod
    def from_store(cls, name: str, version: str | None = None,
                   store: "Store | None" = None) -> "Predictor":
        """Load a verified version from the model store.

        `version` is a version (`v3`), an alias (`staging`), or None for the served one:
        the `production` alias when it is set, else the latest version.
        """
        from sieve.store import open_store  # not packaged into SageMaker models

        store = store or open_store()
        version = store.resolve(name, version)
        folder = store.open(name, version)
        card = json.loads((folder / "card.json").read_text())
        return cls.from_checkpoint(folder / "model.pt", name, version, card)

    @classmethod
    def from_checkpoint(cls, path: Path, name: str = "model", version: str = "local",
                        card: dict | None = None) -> "Predictor":
        """Load a checkpoint file directly."""
        saved = checkpoint.read(path)
        card = card or {k: saved.get(k) for k in ("classes", "threshold", "task")}
        prep = Preprocessing.from_dict(saved["preprocessing"])
        return cls(name, version, checkpoint.build(saved), card, prep)

    @property
    def classes(self) -> list[str]:
        """Class names, in output order."""
        return list(self.card["classes"])

    def canonical(self, sources) -> torch.Tensor:
        """Decode and convert images (bytes, paths or PIL images) to a uint8 batch."""
        # Decoded one at a time and reduced at once: one full-size image in memory at most.
        arrays = [to_canonical(decode(s, self.preprocessing), self.preprocessing)
                  for s in sources]
        if sum(len(s) for s in sources if isinstance(s, bytes)) > LARGE_BATCH_BYTES:
            release_memory()
        return torch.stack([torch.from_numpy(a) for a in arrays])

    @torch.no_grad()
    def probabilities(self, canonical: torch.Tensor) -> torch.Tensor:
        """One forward pass (and its mirror image): (N, classes), or (N,) for a filter."""
        return predict(self.model, canonical, self.preprocessing)

    def classify(self, sources, top_k: int = 3) -> list[dict]:
        """Class, probability and the top-k classes of each image."""
        return [self.describe_class(row, top_k)
                for row in self.probabilities(self.canonical(sources))]

    def filter_verdicts(self, sources) -> list[dict]:
        """The filter's verdict on each image: score, threshold and accepted or not."""
        return [self.describe_score(s) for s in self.probabilities(self.canonical(sources))]

    def describe_class(self, row: torch.Tensor, top_k: int = 3) -> dict:
        """A classifier's output row as class, probability and top-k classes."""
        values, indices = row.topk(min(top_k, len(row)))
        top = [{"class": self.classes[i], "probability": round(float(v), 6)}
               for v, i in zip(values, indices, strict=True)]
        return {"class": top[0]["class"], "probability": top[0]["probability"],
                "top_k": top, "model": self.name, "version": self.version}

    def describe_score(self, score: torch.Tensor | float) -> dict:
        """A filter's score as a verdict against the threshold recorded in its card."""
        threshold = float(self.card["threshold"])
        return {"accepted": bool(float(score) >= threshold), "score": round(float(score), 6),
                "threshold": threshold, "model": self.name, "version": self.version}
