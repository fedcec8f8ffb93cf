"""Progress of the evaluation's long loops (feature extraction, classifier epochs), on stderr.

A linear evaluation spends a minute encoding images before it prints anything else; a bar with the
count and the time left shows it is working. On stderr, so stdout keeps only the results; where stderr
is not a terminal (a log file), Rich prints each finished bar once instead of redrawing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

Item = TypeVar("Item")


def shown(items: Iterable[Item], description: str) -> Iterator[Item]:
    """Iterates over `items` (which must have a length) while drawing a progress bar named `description`."""
    yield from track(items, description=f"{description:<24}", console=Console(stderr=True))
