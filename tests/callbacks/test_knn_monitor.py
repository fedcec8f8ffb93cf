from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger

from callbacks import KNNMonitor
from datamodules import ImageFolderDataModule
from evaluation.data import LabelledTrainSplit, extract_features, loader
from evaluation.knn import knn_accuracy
from lightning_modules.simclr import SimCLR
from tests.evaluation.conftest import write_colour_tree


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_tree(tmp_path_factory.mktemp("knn") / "images")


def _trainer(tmp_path: Path, callback: KNNMonitor, max_epochs: int = 1) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        limit_train_batches=1,
        callbacks=[callback],
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )


def _parts(root: Path) -> tuple[SimCLR, ImageFolderDataModule]:
    pl.seed_everything(0)
    model = SimCLR(backbone="tiny_resnet", image_size=32, batch_size=16, warmup_epochs=0)
    return model, ImageFolderDataModule(str(root), batch_size=16, num_workers=0, image_size=32)


def test_validate_logs_the_knn_accuracy_of_the_seeded_bank(colour_root: Path, tmp_path: Path) -> None:
    model, datamodule = _parts(colour_root)
    monitor = KNNMonitor(bank_size=10, k=5, temperature=0.1, seed=3)
    logged = _trainer(tmp_path, monitor).validate(model, datamodule=datamodule)[0]["val/knn_top1"]

    split = LabelledTrainSplit(datamodule)
    bank_positions = np.sort(np.random.default_rng(3).permutation(len(split.indices))[:10])
    bank, bank_labels = extract_features(model.encoder, loader(split.dataset(bank_positions), 16, 0), "cpu")
    queries, labels = extract_features(model.encoder, datamodule.val_dataloader(), "cpu")
    assert len(bank) == 10
    assert logged == pytest.approx(knn_accuracy(bank, bank_labels, queries, labels, 3, k=5, temperature=0.1))


def test_fit_measures_every_n_epochs_and_at_the_last_epoch(colour_root: Path, tmp_path: Path) -> None:
    model, datamodule = _parts(colour_root)
    trainer = _trainer(tmp_path, KNNMonitor(every_n_epochs=2, k=5), max_epochs=3)
    trainer.fit(model, datamodule=datamodule)
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/knn_top1")]
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert all(0.0 <= float(row["val/knn_top1"]) <= 1.0 for row in rows)


def test_zero_turns_the_monitor_off(colour_root: Path, tmp_path: Path) -> None:
    model, datamodule = _parts(colour_root)
    metrics = _trainer(tmp_path, KNNMonitor(every_n_epochs=0)).validate(model, datamodule=datamodule)[0]
    assert "val/knn_top1" not in metrics


def test_bad_settings_name_the_flags() -> None:
    with pytest.raises(ValueError, match="--knn_monitor"):
        KNNMonitor(k=0)
