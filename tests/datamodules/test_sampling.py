"""The evaluation order: every prefix is a class-balanced sample, the whole split is still served."""

from __future__ import annotations

from collections import Counter

import pytest
from torch.utils.data import Subset

from datamodules.sampling import (
    ClassInterleavedSampler,
    class_interleaved_order,
    listed_labels,
    resume_position,
)


class LabelledList(list):
    """A dataset that lists its classes as torchvision's ImageFolder and CIFAR do (`targets`)."""

    def __init__(self, targets: list[int]) -> None:
        super().__init__(targets)
        self.targets = targets


def sorted_labels(sizes: tuple[int, ...]) -> list[int]:
    """Labels grouped by class, as an image folder lists its files."""
    return [label for label, size in enumerate(sizes) for _ in range(size)]


def worst_prefix_imbalance(labels: list[int], order: list[int]) -> float:
    """max over prefixes and classes of |count in prefix - prefix length x class share|."""
    shares = {label: count / len(labels) for label, count in Counter(labels).items()}
    seen: Counter[int] = Counter()
    worst = 0.0
    for length, index in enumerate(order, start=1):
        seen[labels[index]] += 1
        worst = max(worst, *(abs(seen[label] - length * share) for label, share in shares.items()))
    return worst


@pytest.mark.parametrize("sizes", [(10, 10, 10, 10), (30, 20, 10), (100, 1, 50, 13)])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_prefix_holds_each_class_in_its_share_to_within_one_image(sizes, seed) -> None:
    labels = sorted_labels(sizes)
    order = class_interleaved_order(labels, seed)
    assert sorted(order) == list(range(len(labels)))  # a permutation: the whole split, once
    assert worst_prefix_imbalance(labels, order) < 1.0
    # The folder's own order fails the same check by far: the first prefix is one class.
    assert worst_prefix_imbalance(labels, list(range(len(labels)))) > 5


def test_the_order_is_seeded() -> None:
    labels = sorted_labels((20, 20, 20))
    assert class_interleaved_order(labels, 3) == class_interleaved_order(labels, 3)
    assert class_interleaved_order(labels, 3) != class_interleaved_order(labels, 4)


def test_first_batches_of_a_sorted_folder_hold_every_class() -> None:
    """What `--trainer.limit_val_batches 4` of 32 sees on CIFAR-10 sorted by class (1,000 per class)."""
    labels = sorted_labels((1000,) * 10)
    sampler = ClassInterleavedSampler(LabelledList(labels), num_replicas=1, rank=0, seed=0)
    first = [labels[index] for index in list(sampler)[: 4 * 32]]
    assert set(Counter(first).values()) <= {12, 13}  # 128 images: 12 or 13 of each of the 10 classes


def test_ranks_share_the_split_and_each_rank_prefix_is_balanced() -> None:
    labels = sorted_labels((9, 9, 9))  # 27 images on 2 ranks: one repeated to even the shares
    dataset = LabelledList(labels)
    shares = [list(ClassInterleavedSampler(dataset, num_replicas=2, rank=rank, seed=0)) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 14
    assert set(shares[0]) | set(shares[1]) == set(range(27))
    for share in shares:
        assert set(Counter(labels[index] for index in share[:6]).values()) == {2}


def test_labels_are_read_without_loading_images() -> None:
    dataset = LabelledList([2, 0, 1, 1])
    assert listed_labels(dataset).tolist() == [2, 0, 1, 1]
    assert listed_labels(Subset(dataset, [3, 0])).tolist() == [1, 2]
    assert listed_labels([0, 1]) is None  # no targets: the sampler keeps the dataset's order
    assert list(ClassInterleavedSampler([5, 6, 7], num_replicas=1, rank=0, seed=0)) == [0, 1, 2]


@pytest.mark.parametrize(
    ("epochs_started", "batches_done", "position"),
    [
        (0, 0, (0, 0)),  # saved before the first epoch started: the start-up sanity check
        (1, 0, (0, 0)),  # saved before the first step of the first epoch
        (1, 3, (0, 3)),  # mid-epoch
        (1, 8, (1, 0)),  # at the end of the first epoch (8 batches): the next one starts afresh
        (3, 5, (2, 5)),
    ],
)
def test_resume_position(epochs_started: int, batches_done: int, position: tuple[int, int]) -> None:
    assert resume_position(epochs_started, batches_done, batches_per_epoch=8) == position
