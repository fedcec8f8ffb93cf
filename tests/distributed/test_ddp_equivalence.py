"""Two processes through Lightning's own DDP strategy (gloo, CPU) must train exactly like one.

The tests share one fit on 2 processes x N images and one on 1 process x the same 2N images, and compare
what every rank recorded. This catches the classic SimCLR-under-DDP bugs: no gather (fewer negatives,
another loss), a gather without gradients (other encoder gradients), positives at the wrong index on
rank 1 (another loss), and an online probe that diverges across ranks or scores one rank's half only.

`ddp_spawn` rather than `ddp`: inside pytest, `ddp` would re-launch pytest itself in the workers. The
spawned workers receive the model pickled, test-only encoder included. The model has no batch-norm,
whose per-device statistics differ from one device's by design; the batch-norm case needs
`sync_batchnorm=True`, which PyTorch's SyncBatchNorm supports on GPUs only, so it is not tested here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

import lightning_modules.simclr as simclr_module
from callbacks import OnlineLinearProbe
from lightning_modules.simclr import SimCLR
from tests.distributed.process_group import DestroyProcessGroupAtTeardown

WORLD_SIZE = 2
PER_DEVICE_BATCH = 4
GLOBAL_BATCH = WORLD_SIZE * PER_DEVICE_BATCH
TRAINING_STEPS = 3
IMAGE_SIZE = 16
SMALL_SIZE = 8
FEATURE_DIM = 16
VALIDATION_IMAGES = 8

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*ddp_spawn.*"),
    pytest.mark.filterwarnings("ignore:.*sync_dist=True.*"),
]


class PairedViews(Dataset):
    """Fixed view pairs (and small views), so that one process can be given exactly the images two
    processes saw."""

    def __init__(self, view1: Tensor, view2: Tensor, small_views: Tensor | None = None) -> None:
        self.view1 = view1
        self.view2 = view2
        self.small_views = small_views  # [S, images, 3, s, s], view-major as in a batch

    @classmethod
    def random(cls, size: int, small_views: int = 0) -> PairedViews:
        generator = torch.Generator().manual_seed(0)
        shape = (size, 3, IMAGE_SIZE, IMAGE_SIZE)
        small = torch.randn(small_views, size, 3, SMALL_SIZE, SMALL_SIZE, generator=generator)
        return cls(
            torch.randn(shape, generator=generator), torch.randn(shape, generator=generator),
            small if small_views else None,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.view1)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = {
            "view1": self.view1[index],
            "view2": self.view2[index],
            "probe_view": self.view1[index],
            "label": torch.tensor(index % 2),
        }
        if self.small_views is not None:
            item["small_views"] = self.small_views[:, index]
        return item

    @staticmethod
    def collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        batch = default_collate(items)
        if "small_views" in batch:
            batch["small_views"] = batch["small_views"].transpose(0, 1)  # [S, B, 3, s, s]
        return batch


class BatchNormFreeEncoder(nn.Sequential):
    """Without sync batch-norm, batch statistics over 2N local images differ from those over 4N, so
    plain DDP equals one process only for an encoder whose output does not depend on the batch."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, FEATURE_DIM),
        )


def batch_norm_free_backbone(
    name: str, image_size: int, cifar_stem: bool | None = None, patch_size: int | None = None
):
    return BatchNormFreeEncoder(), FEATURE_DIM


class RecordRank(pl.Callback):
    """Writes what this rank saw to `<folder>/rank<R>.pt`: the first step's views, loss and averaged
    gradients, and the probe's weights, its validation accuracy and the validation labels it scored."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.record: dict[str, Any] = {"validation_labels": []}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for callback in trainer.callbacks:
            if isinstance(callback, OnlineLinearProbe):
                self.record["probe_at_start"] = copy.deepcopy(callback.classifier.state_dict())

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        # DDP has already all-reduced (averaged) the gradients when the optimiser is about to step.
        if trainer.global_step == 0:
            self.record["gradients"] = {
                name: parameter.grad.detach().clone() for name, parameter in pl_module.named_parameters()
            }

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self.record["loss"] = outputs["loss"].detach().clone()
            self.record["views"] = (batch["view1"].clone(), batch["view2"].clone())
            if "small_views" in batch:
                self.record["small_views"] = batch["small_views"].clone()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.record["validation_labels"].append(batch[1].clone())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for callback in trainer.callbacks:
            if isinstance(callback, OnlineLinearProbe):
                self.record["probe"] = copy.deepcopy(callback.classifier.state_dict())
                self.record["probe_top1"] = trainer.callback_metrics["val/probe_top1"].clone()
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.record, self.folder / f"rank{trainer.global_rank}.pt")


def fit(
    model: SimCLR, folder: Path, data: PairedViews, callbacks: list[pl.Callback], **trainer_args: Any
) -> None:
    devices = trainer_args.pop("devices", 1)
    settings: dict[str, Any] = dict(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_steps=TRAINING_STEPS,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, RecordRank(folder), DestroyProcessGroupAtTeardown()],
    )
    settings.update(trainer_args)
    # Under DDP, Lightning swaps in a shuffling DistributedSampler whatever the loader says.
    train = DataLoader(data, batch_size=GLOBAL_BATCH // devices, shuffle=False, collate_fn=data.collate)
    pl.Trainer(**settings).fit(model, train_dataloaders=train, val_dataloaders=validation_loader())


def validation_loader() -> DataLoader:
    """Identical images labelled 0, 1, 0, 1, ...: whatever class the probe predicts for the image, its
    accuracy over the whole set is exactly 0.5, while each rank's half (evens or odds) scores 0 or 1."""
    images = torch.zeros(VALIDATION_IMAGES, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.arange(VALIDATION_IMAGES) % 2
    return DataLoader(TensorDataset(images, labels), batch_size=2)


def run_two_processes_and_one(folder: Path, model: SimCLR, small_views: int = 0):
    """Fits copies of one initial model on two processes, then on one process for one step on exactly the
    images the two processes' first step saw; returns (one, [rank 0, rank 1]).

    Lightning's DistributedSampler shuffles the training set and splits it between the ranks; recording
    each rank's first batch keeps the comparison independent of how it does that. Any order of the 2N
    images gives the same mean loss, as long as each image's two views stay together.
    """
    probe = OnlineLinearProbe(lr=0.05, num_classes=2)
    two_data = PairedViews.random(TRAINING_STEPS * GLOBAL_BATCH, small_views)
    fit(copy.deepcopy(model), folder / "two", two_data, [probe], devices=WORLD_SIZE)
    ranks = [torch.load(folder / "two" / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    view1, view2 = (torch.cat([rank["views"][view] for rank in ranks]) for view in (0, 1))
    small = torch.cat([rank["small_views"] for rank in ranks], dim=1) if small_views else None
    first_step = PairedViews(view1, view2, small)
    fit(copy.deepcopy(model), folder / "one", first_step, [], max_steps=1, limit_val_batches=0)
    return torch.load(folder / "one" / "rank0.pt"), ranks


def batch_norm_free_model() -> SimCLR:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(simclr_module, "build_backbone", batch_norm_free_backbone)
        pl.seed_everything(0, verbose=False)
        model = SimCLR(
            image_size=IMAGE_SIZE, projection_batchnorm=False, temperature=0.5, optimizer="sgd", base_lr=0.1,
            batch_size=GLOBAL_BATCH, warmup_epochs=0.0,
        )
    assert not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())
    return model


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory):
    return run_two_processes_and_one(tmp_path_factory.mktemp("ddp"), batch_norm_free_model())


@pytest.fixture(scope="module")
def ddp_multicrop_run(tmp_path_factory: pytest.TempPathFactory):
    """The same with 3 small views per image: the multi-crop loss gathers every view of every rank."""
    return run_two_processes_and_one(tmp_path_factory.mktemp("ddp_multicrop"), batch_norm_free_model(), 3)


@pytest.mark.parametrize("run", ["ddp_run", "ddp_multicrop_run"])
def test_two_processes_take_the_step_of_one_process_on_all_images(run: str, request) -> None:
    one, ranks = request.getfixturevalue(run)
    if run == "ddp_multicrop_run":  # the premise: the step did see small views on every rank
        shape = (3, PER_DEVICE_BATCH, 3, SMALL_SIZE, SMALL_SIZE)
        assert all(rank["small_views"].shape == shape for rank in ranks)
    # Each rank's loss is the mean over its own anchors (against every rank's negatives); DDP averages
    # the ranks' gradients, so the mean of the rank losses is the loss DDP optimises.
    mean_loss = torch.stack([rank["loss"] for rank in ranks]).mean()
    torch.testing.assert_close(mean_loss, one["loss"], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ranks[0]["loss"], ranks[1]["loss"]), "the ranks should score different anchors"
    torch.testing.assert_close(torch.cat([rank["views"][0] for rank in ranks]), one["views"][0])
    assert ranks[0]["gradients"].keys() == one["gradients"].keys()
    for name, expected in one["gradients"].items():
        assert expected.abs().max() > 0, f"{name} got no gradient; the comparison would be vacuous"
        for rank in ranks:
            torch.testing.assert_close(rank["gradients"][name], expected, rtol=1e-4, atol=1e-6, msg=name)


def test_online_probe_stays_identical_on_every_rank(ddp_run) -> None:
    _, ranks = ddp_run
    for name, weights in ranks[0]["probe"].items():
        assert not torch.equal(weights, ranks[0]["probe_at_start"][name]), f"the probe's {name} never moved"
        assert torch.equal(ranks[1]["probe"][name], weights), name


def test_probe_accuracy_covers_the_whole_validation_set(ddp_run) -> None:
    _, ranks = ddp_run
    seen = [torch.cat(rank["validation_labels"]) for rank in ranks]
    # The premise: each rank scored its own half, and the halves hold different classes.
    assert [len(labels) for labels in seen] == [VALIDATION_IMAGES // WORLD_SIZE] * WORLD_SIZE
    assert [labels.unique().tolist() for labels in seen] == [[0], [1]]
    for rank in ranks:
        assert rank["probe_top1"].item() == pytest.approx(0.5)
