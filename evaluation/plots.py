"""The pictures researchers look at: training curves, confusion matrix, embedding map, augmented views.

Each function writes one PNG and returns its path; `log_images_to_wandb` sends PNGs to W&B when the
trainer logs there. Matplotlib's Agg backend renders without a display (servers, CI, DDP workers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from evaluation.class_labels import drawable_labels  # noqa: E402

# A metric's history: (global step, value) pairs in the order they were logged.
History = Mapping[str, Sequence[tuple[int, float]]]
# t-SNE is quadratic-ish in the number of points; a few thousand already show the cluster structure.
EMBEDDING_MAX_POINTS = 3000


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Counts [true class, predicted class]."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix: Tensor, class_names: Sequence[str], path: Path, title: str) -> Path:
    """Rows normalised to recall, so classes of different sizes read alike; counts printed when few."""
    counts = matrix.double()
    recall = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, label="fraction of the true class")
    if len(class_names) <= 30:
        ticks = np.arange(len(class_names))
        drawable = drawable_labels(class_names)
        axes.set_xticks(ticks, drawable.labels, rotation=90, fontfamily=drawable.families)
        axes.set_yticks(ticks, drawable.labels, fontfamily=drawable.families)
        for row, column in np.ndindex(recall.shape):
            colour = "white" if recall[row, column] > 0.5 else "black"
            axes.text(
                column, row, int(counts[row, column]), ha="center", va="center", fontsize=7, color=colour
            )
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    return _save(figure, path)


def embed_2d(features: Tensor, seed: int = 0) -> np.ndarray:
    """t-SNE of L2-normalised features (cosine geometry, the one SimCLR's loss shapes)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    normalised = torch.nn.functional.normalize(features.float(), dim=1).numpy()
    perplexity = float(min(30, max(2, (len(normalised) - 1) // 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # One OpenMP thread: a few thousand points take seconds, while spinning threads on a busy or
    # shared machine made the same map take minutes.
    with threadpool_limits(limits=1):
        return tsne.fit_transform(normalised)


def plot_embedding(
    features: Tensor, labels: Tensor, class_names: Sequence[str], path: Path, title: str, seed: int = 0
) -> Path:
    """2-D t-SNE map coloured by class, of at most EMBEDDING_MAX_POINTS seeded-random samples."""
    if len(features) > EMBEDDING_MAX_POINTS:
        keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[
            :EMBEDDING_MAX_POINTS
        ]
        features, labels = features[keep], labels[keep]
    points = embed_2d(features, seed)
    figure, axes = plt.subplots(figsize=(8, 7))
    colours = plt.get_cmap("tab20" if len(class_names) > 10 else "tab10")
    drawable = drawable_labels(class_names)
    for index, name in enumerate(drawable.labels):
        chosen = (labels == index).numpy()
        if chosen.any():
            axes.scatter(*points[chosen].T, s=6, color=colours(index % colours.N), label=name, alpha=0.8)
    if len(class_names) <= 20:
        axes.legend(markerscale=3, loc="best", prop={"family": drawable.families, "size": 8})
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(f"{title} (t-SNE of {len(features)} samples)")
    return _save(figure, path)


# The panels of curves.png: (title, y-axis label, which metric names it shows); a metric goes to the first
# panel that claims it. Health panels appear only when their metrics were logged.
CURVE_PANELS = (
    ("loss", "loss", lambda name: "loss" in name),
    (
        "effective rank (RankMe; falls when the representation collapses)",
        "RankMe",
        lambda name: "rankme" in name,
    ),
    (
        "alignment (lower: positives closer), uniformity (lower: more spread)",
        "alignment / uniformity",
        lambda name: "alignment" in name or "uniformity" in name,
    ),
    ("accuracy", "accuracy", lambda name: True),
)


def curve_panels(history: History) -> list[tuple[str, str, dict[str, Sequence[tuple[int, float]]]]]:
    """(title, y label, curves) of each panel that has curves; loss and accuracy are always drawn."""
    panels: list[tuple[str, str, dict[str, Sequence[tuple[int, float]]]]] = []
    claimed: set[str] = set()
    for title, label, claims in CURVE_PANELS:
        curves = {
            name: points
            for name, points in history.items()
            if points and name not in claimed and claims(name)
        }
        claimed |= set(curves)
        if curves or label in ("loss", "accuracy"):
            panels.append((title, label, curves))
    return panels


def plot_training_curves(history: History, path: Path, title: str = "training curves") -> Path:
    """Losses, then the representation's health where logged, then accuracies, against the optimiser step."""
    panels = curve_panels(history)
    figure, grid = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for axes, (panel_title, label, curves) in zip(grid[0], panels, strict=True):
        for name, points in sorted(curves.items()):
            steps, values = zip(*points, strict=True)
            marker = "o" if len(points) <= 50 else None
            axes.plot(steps, values, label=name, marker=marker, markersize=3)
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.set_title(panel_title, fontsize=9)
        axes.grid(alpha=0.3)
        if curves:
            axes.legend(fontsize=8)
        if label == "accuracy":
            axes.set_ylim(0.0, 1.0)
    figure.suptitle(title)
    return _save(figure, path)


def plot_view_pairs(
    view1: Tensor,
    view2: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    path: Path,
    max_pairs: int = 16,
    small_views: Tensor | None = None,
) -> Path:
    """Each column one image: its two augmented views stacked, then its small multi-crop views
    ([N, B, 3, s, s], drawn at the same cell size), un-normalised back to pixels."""
    count = min(max_pairs, len(view1))
    columns = min(8, count)
    stacked = [view1, view2, *(small_views if small_views is not None else [])]
    per_image = len(stacked)
    rows = per_image * int(np.ceil(count / columns))
    figure, grid = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for index in range(count):
        row, column = per_image * (index // columns), index % columns
        for offset, views in enumerate(stacked):
            grid[row + offset, column].imshow(_to_pixels(views[index], mean, std))
    small = f", then its {per_image - 2} small views" if per_image > 2 else ""
    figure.suptitle(f"SimCLR views of the first batch (each column an image: view 1, view 2{small})")
    return _save(figure, path)


def _to_pixels(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    shape = (-1, 1, 1)
    pixels = image.detach().float().cpu() * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    return pixels.clamp(0, 1).permute(1, 2, 0).numpy()


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def log_images_to_wandb(
    loggers: Iterable[object], images: Mapping[str, Path], step: int | None = None
) -> None:
    """Send PNGs to every W&B logger among `loggers`; other loggers have no image API in common."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            payload = {key: wandb.Image(str(path)) for key, path in images.items()}
            logger.experiment.log(payload if step is None else {**payload, "trainer/global_step": step})
