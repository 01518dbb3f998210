"""The pictures in a model artifact: training curves, confusion matrix, filter scores."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and workers
import matplotlib.pyplot as plt


def training_curves(history: list[dict], path: Path, title: str) -> Path:
    """Loss and accuracy per epoch, training against validation."""
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_ax.plot(epochs, [r["train_accuracy"] for r in history], "o-", label="train")
    acc_ax.plot(epochs, [r["val_accuracy"] for r in history], "o-", label="validation")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def confusion(matrix: list, classes: list[str], path: Path, title: str) -> Path:
    """A confusion matrix with counts in the cells, true classes down the side."""
    size = max(5, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)
    return _save(fig, path)


def filter_scores(in_domain, outliers: dict, threshold: float, path: Path, title: str) -> Path:
    """Histograms of filter scores: in-domain test images against each outlier kind."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bins = [i / 50 for i in range(51)]
    ax.hist(in_domain.tolist(), bins=bins, alpha=0.6, label="in-domain (test)", density=True)
    for kind, scores in outliers.items():
        ax.hist(scores.tolist(), bins=bins, histtype="step", linewidth=1.5, label=kind,
                density=True)
    ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="filter score (1 = in-domain)", ylabel="density", title=title, yscale="log")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    """Write the figure as PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
