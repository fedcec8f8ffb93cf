from pathlib import Path

import torch

from evaluation.plots import (
    confusion_matrix,
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
