"""Online kNN monitor: weighted kNN accuracy (Wu et al., 2018) of the encoder while SimCLR pre-trains.

The linear probe needs training; kNN does not, so it measures the geometry of the representation
alone, the quantity contrastive learning shapes. Every `every_n_epochs` validation epochs, the
features of a fixed, seeded subset of the labelled training images (the bank, evaluation view) are
computed and every validation sample is classified by its k nearest bank features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from callbacks.online_probe import UNLABELED, _eval_mode, _gather_from_all_ranks
from evaluation.data import LabelledTrainSplit, loader
from evaluation.knn import knn_predict


class KNNMonitor(pl.Callback):
    """Logs ``val/knn_top1`` every ``every_n_epochs`` epochs and at the last epoch (``test/knn_top1``
    under ``trainer.test``, always).

    The bank holds labelled training images only: the held-out validation slice (label -1 in
    ``train_images()``) never enters it.

    Under DDP each rank encodes its share of the bank, the shares are gathered so every rank holds
    the whole bank, each rank scores its own validation samples, and the hit counts are summed.

    Args:
        every_n_epochs: run on validation epochs whose number is a multiple of this, and on the
            last epoch; 0 turns the monitor off. `validate` runs always measure.
        bank_size: at most this many labelled training images in the bank (seeded random subset).
        k: neighbours that vote.
        temperature: votes are weighted exp(cosine similarity / temperature).
        seed: picks the bank subset, the same one every epoch and on every rank.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        bank_size: int = 10_000,
        k: int = 200,
        temperature: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if every_n_epochs < 0 or bank_size < 1 or k < 1 or temperature <= 0:
            raise ValueError(
                f"KNNMonitor needs every_n_epochs >= 0 (0: off), bank_size >= 1, k >= 1 and temperature > 0; "
                f"got every_n_epochs={every_n_epochs}, bank_size={bank_size}, k={k}, "
                f"temperature={temperature} (--knn_monitor.*)."
            )
        self.every_n_epochs = every_n_epochs
        self.bank_size = bank_size
        self.k = k
        self.temperature = temperature
        self.seed = seed
        self._bank: tuple[Tensor, Tensor] | None = None
        # Listing the training images once; an ImageNet-sized folder takes a while to scan.
        self._split: LabelledTrainSplit | None = None
        self._queries: list[tuple[Tensor, Tensor]] = []

    def _due(self, trainer: pl.Trainer) -> bool:
        if self.every_n_epochs == 0 or trainer.sanity_checking:
            return False
        if trainer.state.fn != "fit":
            return True
        epoch = trainer.current_epoch + 1
        return epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._queries = []
        self._bank = self._encode_bank(trainer, pl_module) if self._due(trainer) else None

    def _encode_bank(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Tensor, Tensor]:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "train_images"):
            raise ValueError(
                "KNNMonitor needs a SimCLR datamodule (with train_images()) for its feature bank; "
                "set --knn_monitor.every_n_epochs 0 to turn it off."
            )
        if self._split is None:
            self._split = LabelledTrainSplit(datamodule)
        split = self._split
        order = np.random.default_rng(self.seed).permutation(len(split.indices))[: self.bank_size]
        share = np.sort(order)[trainer.global_rank :: trainer.world_size]
        images = loader(
            split.dataset(share), datamodule.per_device_batch_size, datamodule.hparams.num_workers
        )
        features, labels = [], []
        with torch.no_grad(), _eval_mode(pl_module), trainer.precision_plugin.val_step_context():
            for batch_images, batch_labels in images:
                features.append(pl_module(batch_images.to(pl_module.device)).float())
                labels.append(batch_labels.to(pl_module.device))
        local_features = torch.cat(features) if features else torch.zeros(0, pl_module.feature_dim)
        local_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        all_features, all_labels = _gather_from_all_ranks(
            trainer, local_features.to(pl_module.device), local_labels.to(pl_module.device)
        )
        keep = all_labels != UNLABELED
        return all_features[keep], all_labels[keep]

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._bank is not None:
            self._queries.append((outputs["features"].float(), outputs["labels"]))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_accuracy(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._queries = []
        self._bank = self._encode_bank(trainer, pl_module) if self.every_n_epochs > 0 else None

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_accuracy(trainer, pl_module, "test")

    def _log_accuracy(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        if self._bank is None:
            return
        bank_features, bank_labels = self._bank
        hits = torch.zeros(2, device=pl_module.device)
        if self._queries:
            features = torch.cat([features for features, _ in self._queries])
            labels = torch.cat([labels for _, labels in self._queries])
            num_classes = trainer.datamodule.num_classes
            scores = knn_predict(bank_features, bank_labels, features, num_classes, self.k, self.temperature)
            hits[0], hits[1] = (scores.argmax(dim=1) == labels).sum(), len(labels)
        hits = trainer.strategy.reduce(hits, reduce_op="sum")
        accuracy = hits[0] / hits[1].clamp(min=1)
        # Equal on every rank after the sum; "max" of equal values is exact and keeps Lightning quiet.
        pl_module.log(
            f"{split}/knn_top1", accuracy, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max"
        )
        self._bank, self._queries = None, []
