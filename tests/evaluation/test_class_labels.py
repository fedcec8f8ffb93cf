"""Class names in any script are drawn readably, without "Glyph missing" warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import torch

from evaluation.class_labels import drawable_labels
from evaluation.plots import plot_confusion_matrix, plot_embedding

# Shipped with matplotlib, so present on every machine: it has U+1D81 (ᶁ), which DejaVu Sans lacks.
STIX = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "STIXGeneral.ttf")


def test_a_font_that_has_the_glyphs_is_added_and_the_rest_is_escaped_after_the_index() -> None:
    drawable = drawable_labels(["cat", "кошка", "ᶁog", "猫"], fonts=[STIX])
    # Latin and Cyrillic: the default font; U+1D81: found in STIX; 猫: in neither, so escaped.
    assert drawable.labels == ["cat", "кошка", "ᶁog", "3: \\u732b"]
    assert drawable.families == ["DejaVu Sans", "STIXGeneral"]
    assert drawable_labels(["cat", "dog"], fonts=[STIX]).families == ["DejaVu Sans"]  # nothing to add


def test_non_latin_class_names_draw_without_missing_glyphs(tmp_path: Path) -> None:
    names = ["猫", "犬", "кошка", "ᶁog"]  # the last drawn with STIX, a font matplotlib ships
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" per character
        plot_confusion_matrix(torch.eye(4, dtype=torch.long) * 3, names, tmp_path / "cm.png", "cm")
        plot_embedding(torch.randn(20, 4), torch.arange(4).repeat(5), names, tmp_path / "tsne.png", "t-SNE")
