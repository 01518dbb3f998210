"""Metrics for the classifier (accuracy, confusion matrix) and the filter (AUROC, rates)."""

import torch


def confusion_matrix(targets: torch.Tensor, predicted: torch.Tensor, classes: int) -> list:
    """Counts[true][predicted] as nested lists."""
    counts = torch.bincount(targets * classes + predicted, minlength=classes * classes)
    return counts.view(classes, classes).tolist()


def per_class_accuracy(matrix: list, names: list[str]) -> dict[str, float]:
    """Recall of each class from a confusion matrix."""
    return {
        name: (row[i] / sum(row) if sum(row) else 0.0)
        for i, (name, row) in enumerate(zip(names, matrix, strict=True))
    }


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve: the chance a positive scores above a negative (ties count half)."""
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("AUROC needs at least one positive and one negative score")
    scores = torch.cat([positive, negative]).double()
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.double)
    # Average the ranks of tied scores.
    unique, inverse = torch.unique(scores, return_inverse=True)
    sums = torch.zeros(len(unique), dtype=torch.double).index_add_(0, inverse, ranks)
    counts = torch.bincount(inverse, minlength=len(unique)).double()
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def threshold_for_acceptance(scores: torch.Tensor, accept: float) -> float:
    """The highest threshold that accepts at least `accept` of these in-domain scores."""
    if not 0 < accept <= 1:
        raise ValueError("the acceptance rate must be in (0, 1]")
    ordered = scores.sort().values
    index = int((1 - accept) * len(ordered))
    return float(ordered[min(index, len(ordered) - 1)])
