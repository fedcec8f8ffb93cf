"""Class names as matplotlib can draw them, for plots that label classes (confusion matrix, t-SNE legend).

Matplotlib's default font (DejaVu Sans) has Latin, Greek and Cyrillic but no Chinese or Japanese: a
folder of classes named 猫 and 犬 came out as empty boxes, with a "Glyph missing" warning per character.
The fonts installed on the machine are searched for the missing characters (nothing is downloaded), and
matplotlib falls back through the fonts found, glyph by glyph. A character no installed font has is
written as its escape (\\u732b) after the class index, so the label stays unambiguous and readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

# matplotlib's own last-resort font maps every character to a box showing its code: not readable text.
PLACEHOLDER_FONTS = ("Last Resort",)


@dataclass(frozen=True)
class DrawableLabels:
    labels: list[str]  # one per class, in class order
    families: list[str]  # font families to draw them with, the default first


def drawable_labels(class_names: Sequence[str], fonts: Sequence[str] | None = None) -> DrawableLabels:
    """Labels for `class_names` and the font families that have every one of their characters.

    `fonts`: font files to search (default: every font matplotlib knows, system fonts included).
    """
    default_file = font_manager.findfont(font_manager.FontProperties())
    families = [font_manager.FontProperties(fname=default_file).get_name()]
    missing = {char for name in class_names for char in name if ord(char) not in _characters(default_file)}
    candidates = fonts if fonts is not None else _installed_fonts()
    for path in candidates:
        if not missing:
            break
        found = {char for char in missing if ord(char) in _characters(path)}
        if found:
            missing -= found
            families.append(font_manager.FontProperties(fname=path).get_name())
    labels = [_escaped(index, name, missing) for index, name in enumerate(class_names)]
    return DrawableLabels(labels, list(dict.fromkeys(families)))


def _escaped(index: int, name: str, undrawable: set[str]) -> str:
    if not undrawable.intersection(name):
        return name
    written = (ascii(char)[1:-1] if char in undrawable else char for char in name)
    return f"{index}: {''.join(written)}"


def _installed_fonts() -> list[str]:
    """Regular-weight upright faces first: they are what a label should be drawn in."""
    entries = [
        entry for entry in font_manager.fontManager.ttflist if not entry.name.startswith(PLACEHOLDER_FONTS)
    ]
    entries.sort(key=lambda entry: (entry.style != "normal", entry.weight not in (400, "normal", "regular")))
    return list(dict.fromkeys(entry.fname for entry in entries))


@cache
def _characters(path: str) -> frozenset[int]:
    """The code points a font file has glyphs for (read once per file and process)."""
    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError):  # a font file that does not load draws nothing
        return frozenset()
