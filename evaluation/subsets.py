"""Class-balanced, seeded label subsets for the semi-supervised protocol (SimCLR paper, table 7).

The paper fine-tunes on 1% and 10% of ImageNet's labels drawn class-balanced; the same seed gives
the same subset, and the indices are saved with each result so any number can be reproduced.
"""

from __future__ import annotations

import numpy as np


def class_balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions into `labels`: round(fraction x class size) of each class, at least one.

    fraction 1.0 returns every position.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"Label fraction {fraction} must be in (0, 1] (--fractions; 0.01 means 1%).")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen))
