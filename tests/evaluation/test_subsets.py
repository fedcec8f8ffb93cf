import numpy as np
import pytest

from evaluation.subsets import class_balanced_subset

LABELS = np.repeat(np.arange(4), [100, 100, 50, 10])


def test_each_class_contributes_its_fraction_and_at_least_one() -> None:
    chosen = class_balanced_subset(LABELS, 0.1, seed=0)
    assert np.bincount(LABELS[chosen]).tolist() == [10, 10, 5, 1]
    assert len(np.unique(chosen)) == len(chosen)


def test_the_seed_fixes_the_subset() -> None:
    first = class_balanced_subset(LABELS, 0.1, seed=3)
    assert np.array_equal(first, class_balanced_subset(LABELS, 0.1, seed=3))
    assert not np.array_equal(first, class_balanced_subset(LABELS, 0.1, seed=4))


def test_the_full_fraction_is_everything() -> None:
    assert np.array_equal(class_balanced_subset(LABELS, 1.0, seed=0), np.arange(len(LABELS)))


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_fractions_outside_zero_one_are_rejected(fraction: float) -> None:
    with pytest.raises(ValueError, match="--fractions"):
        class_balanced_subset(LABELS, fraction, seed=0)
