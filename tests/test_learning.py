"""One learning check on real images: a short CPU pretraining must beat the same network at random init.

Uses a fixed subset of the CIFAR-10 JPEGs in ../shared/data/cifar10 (present on this project's machines
and in CI); skipped elsewhere.
"""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

import cli
from cli import cli_main
from datamodules import ImageFolderDataModule
from evaluation.knn import knn_accuracy
from lightning_modules.simclr import SimCLR
from views.decode import load_rgb
from views.transforms import eval_transform

CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_PER_CLASS, VAL_PER_CLASS = 200, 100


def link_subset(destination: Path) -> Path:
    """The first images of each class, by file name, linked rather than copied."""
    for split, count in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        source_split = "train" if split == "train" else "test"
        for class_dir in sorted((CIFAR10 / source_split).iterdir()):
            target = destination / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:count]:
                (target / image.name).symlink_to(image)
    return destination


@torch.no_grad()
def knn_top1(model: SimCLR, data: ImageFolderDataModule) -> float:
    """kNN (k=20) of validation features against the training images, both with the eval transform."""
    model.eval()
    transform = eval_transform(data.image_size, data.mean, data.std, native_size=None)

    def features(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = ImageFolder(str(Path(data.root) / split), transform=transform, loader=load_rgb)
        pairs = [(model(x), y) for x, y in DataLoader(images, batch_size=256)]
        return torch.cat([f for f, _ in pairs]), torch.cat([y for _, y in pairs])

    bank_features, bank_labels = features("train")
    query_features, query_labels = features("val")
    return knn_accuracy(bank_features, bank_labels, query_features, query_labels, data.num_classes, k=20)


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR10.is_dir(), reason=f"needs the CIFAR-10 JPEGs in {CIFAR10}")
def test_short_pretraining_beats_random_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cli.RUN_DIR_ENV, raising=False)
    root = link_subset(tmp_path / "cifar10-subset")
    arguments = [
        "--config", str(CONFIGS / "imagefolder.yaml"), "--config", str(CONFIGS / "cpu-smoke.yaml"),
        # 16 px keeps 2 CPU cores fast enough for 250 steps; AdamW learns quicker than LARS in so few.
        "--data.root", str(root), "--data.image_size", "16", "--data.batch_size", "64",
        "--data.jitter_strength", "0.5", "--data.min_crop_scale", "0.2", "--data.view_path", "batched",
        "--model.optimizer", "adamw", "--model.base_lr", "0.008", "--model.weight_decay", "1e-4",
        "--model.temperature", "0.5", "--trainer.max_epochs", "6", "--trainer.limit_train_batches", "1.0",
        "--trainer.limit_val_batches", "1.0", "--trainer.check_val_every_n_epoch", "4",
        "--trainer.logger", "false", "--seed_everything", "0",
    ]
    trained = cli_main(["fit", *arguments])
    pl.seed_everything(0)
    # LightningCLI records its own bookkeeping keys (leading underscore) beside the real arguments.
    random_init = SimCLR(**{k: v for k, v in trained.model.hparams.items() if not k.startswith("_")})

    trained_top1 = knn_top1(trained.model, trained.datamodule)
    random_top1 = knn_top1(random_init, trained.datamodule)
    probe_top1 = trained.trainer.callback_metrics["val/probe_top1"].item()
    print(f"kNN top-1: pretrained {trained_top1:.3f}, random init {random_top1:.3f}; probe {probe_top1:.3f}")
    # 1,000 validation images: a standard error of about 1.5 points on each accuracy.
    assert trained_top1 > random_top1 + 0.04
