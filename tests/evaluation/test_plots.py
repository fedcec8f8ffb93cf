from pathlib import Path

import torch
from PIL import Image

from evaluation.plots import (
    confusion_matrix,
    curve_panels,
    plot_confusion_matrix,
    plot_embedding,
    plot_training_curves,
    plot_view_pairs,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_counts_true_rows_against_predicted_columns() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(predictions, labels, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_every_picture_is_a_png_file(tmp_path: Path) -> None:
    features = torch.randn(30, 6)
    labels = torch.arange(3).repeat(10)
    views = torch.randn(4, 3, 8, 8)
    paths = [
        plot_confusion_matrix(torch.eye(3, dtype=torch.long) * 4, ["a", "b", "c"], tmp_path / "cm.png", "cm"),
        plot_embedding(features, labels, ["a", "b", "c"], tmp_path / "tsne.png", "features"),
        plot_training_curves(
            {"train/loss": [(1, 5.0), (2, 4.0)], "val/knn_top1": [(2, 0.4)]}, tmp_path / "c.png"
        ),
        plot_view_pairs(views, views.flip(-1), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), tmp_path / "views.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_curves_give_the_health_metrics_panels_of_their_own() -> None:
    history = {
        "train/loss": [(1, 5.0)],
        "train/probe_loss": [(1, 2.0)],
        "train/alignment": [(1, 1.2)],
        "train/uniformity": [(1, -3.0)],
        "val/rankme": [(1, 40.0)],
        "val/knn_top1": [(1, 0.3)],
        "train/positive_accuracy": [(1, 0.5)],
    }
    panels = {label: sorted(curves) for _, label, curves in curve_panels(history)}
    assert panels == {
        "loss": ["train/loss", "train/probe_loss"],
        "RankMe": ["val/rankme"],
        "alignment / uniformity": ["train/alignment", "train/uniformity"],
        "accuracy": ["train/positive_accuracy", "val/knn_top1"],
    }
    # A run that logged none of them keeps the two panels it always had.
    assert [label for _, label, _ in curve_panels({"train/loss": [(1, 5.0)]})] == ["loss", "accuracy"]


def test_view_pairs_add_a_row_per_small_view(tmp_path: Path) -> None:
    views = torch.randn(4, 3, 8, 8)
    mean, std = (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)
    pairs = plot_view_pairs(views, views, mean, std, tmp_path / "pairs.png")
    small = plot_view_pairs(
        views, views, mean, std, tmp_path / "small.png", small_views=torch.randn(2, 4, 3, 4, 4)
    )
    # One image per column, 1.6 inches a row at 110 dpi: 2 rows, then 2 + 2.
    assert Image.open(pairs).size[1] == round(2 * 1.6 * 110)
    assert Image.open(small).size[1] == round(4 * 1.6 * 110)
