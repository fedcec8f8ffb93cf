from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules import CIFAR10DataModule, STL10DataModule
from datamodules.holdout import UNLABELED, check_val_holdout, holdout_count, stratified_holdout
from evaluation.data import LabelledTrainSplit
from tests.datamodules.fake_data import WrittenDataset, unnormalise


def test_balanced_labels_give_every_class_the_same_share() -> None:
    labels = np.repeat(np.arange(10), 50)
    np.random.default_rng(1).shuffle(labels)
    held_out = stratified_holdout(labels, 100, seed=0)
    assert len(held_out) == len(set(held_out.tolist())) == 100
    assert np.bincount(labels[held_out], minlength=10).tolist() == [10] * 10


def test_imbalanced_labels_keep_their_proportions_and_unlabeled_are_never_chosen() -> None:
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10 + [UNLABELED] * 50)
    held_out = stratified_holdout(labels, 10, seed=3)
    assert np.bincount(labels[held_out], minlength=3).tolist() == [6, 3, 1]
    # Shares 4.2 / 2.1 / 0.7 -> 4 / 2 / 0, and the one left goes to the largest fractional part.
    assert np.bincount(labels[stratified_holdout(labels, 7, seed=3)], minlength=3).tolist() == [4, 2, 1]


def test_fewer_held_out_images_than_classes_come_from_classes_all_over_the_range() -> None:
    labels = np.repeat(np.arange(1000), 2)
    held_classes = labels[stratified_holdout(labels, 200, seed=0)]
    # Stratified: one image from each of 200 classes, and those classes spread over all 1,000 (seeded),
    # not classes 0-199. Each fifth of the class range gets 40 expected, 22-58 at 4 standard deviations.
    assert len(set(held_classes.tolist())) == 200
    per_fifth = np.bincount(held_classes // 200, minlength=5)
    assert per_fifth.min() >= 22, per_fifth
    other_seed = labels[stratified_holdout(labels, 200, seed=1)]
    assert set(other_seed.tolist()) != set(held_classes.tolist())


def test_the_slice_is_a_function_of_the_seed() -> None:
    labels = np.repeat(np.arange(4), 25)
    first = stratified_holdout(labels, 20, seed=7)
    np.testing.assert_array_equal(first, stratified_holdout(labels, 20, seed=7))
    assert not np.array_equal(first, stratified_holdout(labels, 20, seed=8))


def test_counts_and_fractions() -> None:
    assert holdout_count(5000, 50_000) == 5000
    assert holdout_count(0.1, 5_000) == 500
    with pytest.raises(ValueError, match="leaving none"):
        holdout_count(5000, 20)
    with pytest.raises(ValueError, match="whole number"):
        holdout_count(2.5, 100)
    assert holdout_count(1, 100) == 1  # a whole number without a decimal point: one image
    assert holdout_count(5000.0, 50_000) == 5000  # what config.yaml files of earlier runs hold


@pytest.mark.parametrize("written", [1.0, 1e0])
def test_one_with_a_decimal_point_is_refused_as_ambiguous(written: float) -> None:
    expected = r"--data.val_holdout=1.0 is ambiguous .*\(e.g. 1 or 5000\).*0.1 for 10%"
    with pytest.raises(ValueError, match=expected):
        check_val_holdout(written)


def test_cifar_validates_on_held_out_training_images_hidden_from_probe(cifar10_root: WrittenDataset) -> None:
    torch.manual_seed(0)
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=4, num_workers=0, val_holdout=5, view_path="per_image"
    )
    datamodule.setup("fit")
    held_out = datamodule.held_out_indices()
    assert held_out is not None and len(held_out) == 5
    written_labels = cifar10_root.train.labels

    # The probe reads labels from the training batches: -1 (skipped) exactly at the held-out images.
    train_labels = np.array([datamodule.train_dataset[i]["label"] for i in range(20)])
    assert (train_labels[held_out] == UNLABELED).all()
    rest = np.setdiff1d(np.arange(20), held_out)
    np.testing.assert_array_equal(train_labels[rest], written_labels[rest])

    # The kNN monitor's bank: labelled training images without the held-out ones.
    bank = LabelledTrainSplit(datamodule)
    assert np.intersect1d(bank.indices, held_out).size == 0 and len(bank.indices) == 15
    # evaluate.py's protocols report on test and select nothing: they train on every labelled image.
    assert len(LabelledTrainSplit(datamodule, include_held_out=True).indices) == 20

    # val/*: the held-out training images with their true labels and every pixel.
    # Batches come in the class-interleaved evaluation order (datamodules/sampling.py).
    val_loader = datamodule.val_dataloader()
    images, labels = next(iter(val_loader))
    first = held_out[list(val_loader.sampler)[:4]]
    np.testing.assert_array_equal(labels.numpy(), written_labels[first])
    restored = unnormalise(images, datamodule.mean, datamodule.std)
    np.testing.assert_array_equal(restored, cifar10_root.train.images[first])
    assert sorted(val_loader.sampler) == list(range(5))  # every held-out image, once
    # test/*: the test split, untouched.
    datamodule.setup("test")
    test_loader = datamodule.test_dataloader()
    _, test_labels = next(iter(test_loader))
    first_test = list(test_loader.sampler)[:4]
    np.testing.assert_array_equal(test_labels.numpy(), cifar10_root.test.labels[first_test])


def test_cached_view_path_hides_the_held_out_labels_too(cifar10_root: WrittenDataset) -> None:
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=4, num_workers=0, val_holdout=5, gpu_augment=True
    )
    datamodule.setup("fit")
    labels = datamodule.train_dataset.labels.cpu().numpy()
    assert (labels[datamodule.held_out_indices()] == UNLABELED).all()
    assert (labels != UNLABELED).sum() == 15


def test_zero_falls_back_to_the_test_split_with_a_warning(cifar10_root: WrittenDataset) -> None:
    datamodule = CIFAR10DataModule(str(cifar10_root.root), batch_size=4, num_workers=0, val_holdout=0)
    with pytest.warns(UserWarning, match="TEST split"):
        datamodule.setup("validate")
    assert datamodule.held_out_indices() is None
    val_loader = datamodule.val_dataloader()
    _, labels = next(iter(val_loader))
    np.testing.assert_array_equal(labels.numpy(), cifar10_root.test.labels[list(val_loader.sampler)[:4]])


def test_stl10_holds_out_labelled_images_only(stl10_root: WrittenDataset) -> None:
    datamodule = STL10DataModule(str(stl10_root.root), batch_size=4, num_workers=0, val_holdout=0.5)
    held_out = datamodule.held_out_indices()
    assert len(held_out) == 3 and (held_out < 6).all()  # the 6 labelled images come first
    labels = LabelledTrainSplit(datamodule).all_labels
    assert (labels[held_out] == UNLABELED).all() and (labels[6:] == UNLABELED).all()
