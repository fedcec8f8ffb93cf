from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from callbacks import OnlineLinearProbe
from callbacks.online_probe import _eval_mode

# Tests that only train have a validation_step but no val loader on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")

IMAGE_SHAPE = (3, 2, 2)
FEATURE_DIM = 16


class TinyContrastiveModule(pl.LightningModule):
    """Stands in for SimCLR. Its loss ignores the encoder, so any encoder gradient can only come from the
    probe, and its optimiser covers the encoder, so such a gradient would also move the encoder weights."""

    def __init__(self, batch_norm: bool = False, return_features: bool = True) -> None:
        super().__init__()
        self.return_features = return_features
        self.feature_dim = FEATURE_DIM
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(3 * 2 * 2, FEATURE_DIM)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(FEATURE_DIM))
        self.encoder = nn.Sequential(*layers)
        self.loss_weight = nn.Parameter(torch.ones(()))

    def forward(self, images: Tensor) -> Tensor:
        return self.encoder(images)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | dict[str, Tensor]:
        if not self.return_features:
            return self.loss_weight**2
        representations = self(torch.cat([batch["view1"], batch["view2"]]))
        return {"loss": self.loss_weight**2, "features": representations.detach()}

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        images, labels = batch
        return {"features": self(images).detach(), "labels": labels}

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self.validation_step(batch, batch_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ContrastiveDataset(Dataset):
    """Yields the training-batch contract; every view is the same image, which is all the probe needs."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image = self.images[index]
        return {"view1": image, "view2": image, "probe_view": image, "label": self.labels[index]}


class BlobDataModule(pl.LightningDataModule):
    num_classes = 4

    def train_dataloader(self) -> DataLoader:
        return train_loader(*gaussian_blobs(self.num_classes, 16, seed=1))

    def val_dataloader(self) -> DataLoader:
        return val_loader(*gaussian_blobs(self.num_classes, 16, seed=2))


class Probe(pl.Callback):
    """Runs a check right after OnlineLinearProbe's hooks (callbacks run in list order)."""

    def __init__(self, on_train_start: Any = None, after_probe_step: Any = None, on_val_start: Any = None):
        self._on_train_start = on_train_start
        self._after_probe_step = after_probe_step
        self._on_val_start = on_val_start

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._on_train_start:
            self._on_train_start(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self._after_probe_step:
            self._after_probe_step(pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._on_val_start and not trainer.sanity_checking:
            self._on_val_start(pl_module)


def gaussian_blobs(num_classes: int, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """Well separated classes (centres shared by all splits), so a working probe must beat chance by far."""
    centres = 3.0 * torch.randn(num_classes, *IMAGE_SHAPE, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    noise = torch.randn(len(labels), *IMAGE_SHAPE, generator=torch.Generator().manual_seed(seed))
    return centres[labels] + 0.3 * noise, labels


def train_loader(images: Tensor, labels: Tensor, batch_size: int = 16) -> DataLoader:
    shuffle_order = torch.Generator().manual_seed(0)
    return DataLoader(ContrastiveDataset(images, labels), batch_size, shuffle=True, generator=shuffle_order)


def val_loader(images: Tensor, labels: Tensor) -> DataLoader:
    return DataLoader(TensorDataset(images, labels), batch_size=16)


def make_trainer(**overrides: Any) -> pl.Trainer:
    settings: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    settings.update(overrides)
    return pl.Trainer(**settings)


def assert_states_equal(actual: Any, expected: Any) -> None:
    if isinstance(expected, Tensor):
        assert torch.equal(actual, expected)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            assert_states_equal(actual[key], expected[key])
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected)
        for actual_item, expected_item in zip(actual, expected, strict=True):
            assert_states_equal(actual_item, expected_item)
    else:
        assert actual == expected


@pytest.fixture(autouse=True)
def _seed() -> None:
    pl.seed_everything(0, verbose=False)


BOTH_SOURCES = pytest.mark.parametrize("features", ["training_views", "probe_view"])


@BOTH_SOURCES
def test_probe_learns_separable_classes_far_above_chance(features: str) -> None:
    probe = OnlineLinearProbe(lr=0.05, num_classes=4, features=features)
    trainer = make_trainer(callbacks=[probe], max_epochs=3)
    trainer.fit(
        TinyContrastiveModule(),
        train_loader(*gaussian_blobs(4, 32, seed=1)),
        val_loader(*gaussian_blobs(4, 32, seed=2)),
    )
    metrics = trainer.callback_metrics
    assert metrics["val/probe_top1"] > 0.9  # chance is 0.25
    assert metrics["val/probe_top5"] == 1.0  # top-5 clamps to top-4 of 4 classes
    assert metrics["train/probe_top1"] > 0.9
    assert metrics["train/probe_loss"] < 0.5

    # trainer.test reports the trained probe on the test split under its own names.
    test_images, test_labels = gaussian_blobs(4, 32, seed=3)
    trainer.test(trainer.lightning_module, val_loader(test_images, (test_labels + 1) % 4))
    assert trainer.callback_metrics["test/probe_top1"] < 0.1  # every label shifted: the probe is wrong
    assert "val/probe_top1" not in trainer.callback_metrics


@BOTH_SOURCES
def test_probe_sends_no_gradient_into_the_encoder_and_keeps_its_mode(features: str) -> None:
    module = TinyContrastiveModule()
    encoder_before = copy.deepcopy(module.encoder.state_dict())
    probe = OnlineLinearProbe(lr=0.05, num_classes=4, features=features)
    observed: list[tuple[bool, bool]] = []

    def check_after_probe_step(pl_module: pl.LightningModule) -> None:
        assert all(parameter.grad is None for parameter in pl_module.encoder.parameters())
        observed.append((pl_module.training, pl_module.encoder.training))

    trainer = make_trainer(callbacks=[probe, Probe(after_probe_step=check_after_probe_step)], max_steps=4)
    trainer.fit(module, train_loader(*gaussian_blobs(4, 16, seed=1)))

    assert observed == [(True, True)] * 4
    assert_states_equal(module.encoder.state_dict(), encoder_before)
    assert module.loss_weight.item() != 1.0  # the module's own optimiser did step
    assert probe.optimizer.state_dict()["state"][0]["step"].item() == 4


def test_probe_forward_leaves_encoder_batch_norm_statistics_unchanged() -> None:
    module = TinyContrastiveModule(batch_norm=True, return_features=False)
    batch_norm = module.encoder[-1]
    statistics_before = copy.deepcopy(batch_norm.state_dict())
    trainer = make_trainer(callbacks=[OnlineLinearProbe(num_classes=4, features="probe_view")], max_steps=3)
    trainer.fit(module, train_loader(*gaussian_blobs(4, 16, seed=1)))

    assert "train/probe_loss" in trainer.callback_metrics
    assert_states_equal(batch_norm.state_dict(), statistics_before)


def test_training_views_without_features_is_a_clear_error() -> None:
    trainer = make_trainer(callbacks=[OnlineLinearProbe(num_classes=4)], max_steps=1)
    with pytest.raises(ValueError, match="--probe.features probe_view"):
        trainer.fit(TinyContrastiveModule(return_features=False), train_loader(*gaussian_blobs(4, 4, seed=1)))


class WithoutProbeView(ContrastiveDataset):
    """The contract of a datamodule built with probe_view=False (the default)."""

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value for key, value in super().__getitem__(index).items() if key != "probe_view"}


def test_probe_view_features_without_the_view_name_the_flag_that_makes_it() -> None:
    trainer = make_trainer(callbacks=[OnlineLinearProbe(num_classes=4, features="probe_view")], max_steps=1)
    loader = DataLoader(WithoutProbeView(*gaussian_blobs(4, 4, seed=1)), batch_size=16)
    with pytest.raises(ValueError, match="--data.probe_view true") as raised:
        trainer.fit(TinyContrastiveModule(), loader)
    assert "\n" not in str(raised.value)


def test_eval_mode_restores_each_submodule_to_its_own_mode() -> None:
    module = TinyContrastiveModule(batch_norm=True).train()
    frozen_batch_norm = module.encoder[-1].eval()
    with _eval_mode(module):
        assert not any(submodule.training for submodule in module.modules())
    assert module.training and module.encoder[1].training
    assert not frozen_batch_norm.training


@BOTH_SOURCES
def test_batches_without_labels_leave_the_probe_untouched(features: str) -> None:
    images, labels = gaussian_blobs(4, 8, seed=1)
    labels[16:] = -1  # one labelled batch of 16, then one without labels
    probe = OnlineLinearProbe(num_classes=4, features=features)
    after_first_step: dict[str, Any] = {}

    def record(pl_module: pl.LightningModule) -> None:
        if not after_first_step:
            after_first_step.update(copy.deepcopy(probe.state_dict()))

    trainer = make_trainer(callbacks=[probe, Probe(after_probe_step=record)], max_steps=2)
    loader = DataLoader(ContrastiveDataset(images, labels), batch_size=16)
    trainer.fit(TinyContrastiveModule(), loader)

    assert after_first_step["optimizer"]["state"][0]["step"].item() == 1
    # The second step saw no label: weights, moments and step count are exactly those of the first.
    assert_states_equal(probe.state_dict(), after_first_step)
    assert trainer.callback_metrics["train/probe_loss"] == 0.0


@BOTH_SOURCES
def test_mixed_batch_trains_on_the_labelled_samples_only(features: str) -> None:
    images, labels = gaussian_blobs(4, 4, seed=1)
    labels[::2] = -1
    images[::2] = 1000.0  # an unlabeled sample leaking into the step would dominate it
    module = TinyContrastiveModule()
    probe = OnlineLinearProbe(lr=0.1, num_classes=4, features=features)
    initial: dict[str, Any] = {}
    callbacks = [probe, Probe(on_train_start=lambda _: initial.update(copy.deepcopy(probe.state_dict())))]
    trainer = make_trainer(callbacks=callbacks, max_steps=1)
    trainer.fit(module, train_loader(images, labels, batch_size=len(labels)))

    reference = nn.Linear(FEATURE_DIM, 4)
    reference.load_state_dict(initial["classifier"])
    optimizer = torch.optim.AdamW(reference.parameters(), lr=0.1, weight_decay=0.0)
    labelled = labels >= 0
    with torch.no_grad():
        representations = module(images[labelled])
    nn.functional.cross_entropy(reference(representations), labels[labelled]).backward()
    optimizer.step()
    assert not torch.allclose(reference.weight, initial["classifier"]["weight"])
    torch.testing.assert_close(probe.classifier.state_dict(), reference.state_dict())
    assert trainer.callback_metrics["train/probe_loss"] > 0


@BOTH_SOURCES
def test_probe_state_survives_checkpoint_and_training_continues(tmp_path: Path, features: str) -> None:
    images, labels = gaussian_blobs(4, 16, seed=1)
    # 4 steps is exactly one epoch of 64 samples, so the checkpoint is an end-of-epoch one.
    first_trainer = make_trainer(callbacks=[OnlineLinearProbe(num_classes=4, features=features)], max_steps=4)
    first_trainer.fit(TinyContrastiveModule(), train_loader(images, labels))
    checkpoint_path = tmp_path / "probe.ckpt"
    first_trainer.save_checkpoint(checkpoint_path)
    saved = torch.load(checkpoint_path, weights_only=False)["callbacks"]["OnlineLinearProbe"]
    assert set(saved) == {"classifier", "optimizer"}
    assert saved["optimizer"]["state"][0]["step"].item() == 4

    resumed_probe = OnlineLinearProbe(num_classes=4, features=features)
    restored: dict[str, Any] = {}
    record = Probe(on_train_start=lambda _: restored.update(copy.deepcopy(resumed_probe.state_dict())))
    resumed_trainer = make_trainer(callbacks=[resumed_probe, record], max_steps=8)
    resumed_trainer.fit(TinyContrastiveModule(), train_loader(images, labels), ckpt_path=checkpoint_path)

    assert_states_equal(restored, saved)
    assert resumed_probe.optimizer.state_dict()["state"][0]["step"].item() == 8
    assert not torch.equal(resumed_probe.classifier.weight, saved["classifier"]["weight"])


def test_probe_state_of_the_unfused_optimiser_resumes() -> None:
    """Checkpoints written before the probe's AdamW was fused (its step count kept on the host)."""
    classifier = nn.Linear(FEATURE_DIM, 4)
    unfused = torch.optim.AdamW(classifier.parameters(), lr=1e-3)
    classifier(torch.randn(2, FEATURE_DIM)).sum().backward()
    unfused.step()
    probe = OnlineLinearProbe(num_classes=4)
    probe.load_state_dict({"classifier": classifier.state_dict(), "optimizer": unfused.state_dict()})
    images, labels = gaussian_blobs(4, 8, seed=1)
    make_trainer(callbacks=[probe], max_steps=2).fit(TinyContrastiveModule(), train_loader(images, labels))

    assert probe.optimizer.param_groups[0]["fused"]
    assert probe.optimizer.state_dict()["state"][0]["step"].item() == 3


def test_state_loaded_before_setup_is_applied_by_setup() -> None:
    source = OnlineLinearProbe(num_classes=4)
    trainer = make_trainer(callbacks=[source], max_steps=2)
    trainer.fit(TinyContrastiveModule(), train_loader(*gaussian_blobs(4, 8, seed=1)))
    saved = copy.deepcopy(source.state_dict())

    target = OnlineLinearProbe(num_classes=4)
    target.load_state_dict(saved)
    target.setup(make_trainer(), TinyContrastiveModule(), stage="fit")
    assert_states_equal(target.state_dict(), saved)


def test_validate_only_with_three_classes_clamps_top5() -> None:
    probe = OnlineLinearProbe(num_classes=3)
    trainer = make_trainer(callbacks=[probe])
    trainer.validate(TinyContrastiveModule(), val_loader(*gaussian_blobs(3, 8, seed=2)))

    assert probe.top5.top_k == 3
    assert trainer.callback_metrics["val/probe_top5"] == 1.0  # top-3 of 3 classes is always right
    assert 0.0 <= trainer.callback_metrics["val/probe_top1"] <= 1.0
    assert "train/probe_loss" not in trainer.callback_metrics


def test_sanity_check_updates_are_reset_before_real_validation() -> None:
    probe = OnlineLinearProbe(num_classes=4)
    update_seen: list[bool] = []
    check = Probe(on_val_start=lambda _: update_seen.append(probe.top1.update_called))
    trainer = make_trainer(callbacks=[probe, check], num_sanity_val_steps=2, max_epochs=1)
    trainer.fit(TinyContrastiveModule(), datamodule=BlobDataModule())

    assert update_seen == [False]
    assert "val/probe_top1" in trainer.callback_metrics


def test_num_classes_comes_from_the_datamodule() -> None:
    probe = OnlineLinearProbe()
    make_trainer(callbacks=[probe], max_steps=1).fit(TinyContrastiveModule(), datamodule=BlobDataModule())
    assert probe.classifier.out_features == BlobDataModule.num_classes


def test_missing_num_classes_is_a_clear_error() -> None:
    trainer = make_trainer(callbacks=[OnlineLinearProbe()])
    with pytest.raises(ValueError, match="pass `num_classes` to OnlineLinearProbe"):
        trainer.validate(TinyContrastiveModule(), val_loader(*gaussian_blobs(4, 4, seed=2)))
