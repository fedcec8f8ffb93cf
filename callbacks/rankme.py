"""RankMe of the validation representations after every validation, and one warning when it collapses.

RankMe (Garrido et al. 2023; lightning_modules/health.py) needs no labels, so it reads the same in a
run on unlabelled images; it is the effective number of directions the representations h use.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lightning_modules.health import gram_singular_values, rankme


class RankMeMonitor(pl.Callback):
    """Logs ``val/rankme`` after every validation (``test/rankme`` under ``trainer.test``), the effective
    rank of the representations that ``validation_step`` returns as ``outputs["features"]``.

    The rank is at most min(validation images, feature width); it is comparable between validations
    of one run (the same images each time) and between runs on the same split, not across datasets or
    backbones (Garrido et al.). Under DDP each rank adds up H^T H of its own batches and the sums are
    all-reduced, which equals the Gram matrix of the whole split: nothing is gathered.

    Collapse warning: once per process, when ``val/rankme`` falls below ``collapse_fraction`` of the
    highest value this run has logged. A relative threshold because RankMe has no scale of its own:
    measured on CIFAR-10 (bench/rankme_collapse.py: tiny_resnet, 128-d features, 500 test images; README
    "Representation health"), the recipe's run and two extreme temperatures rose from 16 at
    initialisation to 47-60 and never fell below 0.75 of an earlier value, while a run at 40x the
    learning rate fell from 16 to 5 (0.31) with its kNN accuracy below random initialisation. The
    highest value is saved in checkpoints, so a resumed run keeps it.

    Args:
        collapse_fraction: warn below this fraction of the run's highest RankMe (0 turns it off).
    """

    def __init__(self, collapse_fraction: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= collapse_fraction < 1.0:
            raise ValueError(
                f"--rankme.collapse_fraction {collapse_fraction} must be in [0, 1) (0 turns the warning off)."
            )
        self.collapse_fraction = collapse_fraction
        self.highest: float | None = None
        self._warned = False
        self._gram: Tensor | None = None
        self._count = 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._gram, self._count = None, 0

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._gram, self._count = None, 0

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        features = outputs["features"].detach().double()
        # float64: the small singular values of a sum over thousands of rows survive the squaring.
        with torch.autocast(device_type=features.device.type, enabled=False):
            gram = features.T @ features
        self._gram = gram if self._gram is None else self._gram + gram
        self._count += features.shape[0]

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

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = self._log_rank(trainer, pl_module, "val")
        if value is not None and trainer.state.fn == "fit":
            self._check_collapse(value, trainer)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_rank(trainer, pl_module, "test")

    def _log_rank(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> float | None:
        """Every rank takes part in the reductions, also one that saw no batch (a short split under DDP)."""
        width = getattr(pl_module, "feature_dim", None)
        if self._gram is None and not isinstance(width, int):
            return None
        gram = self._gram if self._gram is not None else torch.zeros(width, width, dtype=torch.float64)
        gram = trainer.strategy.reduce(gram.to(pl_module.device), reduce_op="sum")
        count = trainer.strategy.reduce(
            torch.tensor(float(self._count), device=pl_module.device), reduce_op="sum"
        )
        self._gram, self._count = None, 0
        if int(count) == 0:
            return None
        value = rankme(gram_singular_values(gram, int(count)))
        # Equal on every rank after the sums; "max" of equal values is exact and keeps Lightning quiet.
        pl_module.log(
            f"{split}/rankme", value.float(), on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max"
        )
        # A diverged run's NaN is logged; the finite-loss check, not a collapse warning, reports it.
        return float(value) if math.isfinite(value) else None

    def _check_collapse(self, value: float, trainer: pl.Trainer) -> None:
        highest = value if self.highest is None else max(self.highest, value)
        self.highest = highest
        if self._warned or self.collapse_fraction == 0 or value >= self.collapse_fraction * highest:
            return
        self._warned = True
        rank_zero_warn(
            f"Representation collapse? val/rankme fell to {value:.1f} at step {trainer.global_step}, below "
            f"{self.collapse_fraction:g} x this run's highest {highest:.1f}: the representations use fewer "
            "and fewer directions. Try a lower --model.base_lr or longer --model.warmup_epochs (the usual "
            "cause), a --model.temperature in 0.1-0.5, and with small per-device batches "
            "--trainer.sync_batchnorm true; check view_pairs.png for views too weak or too strong."
        )

    def state_dict(self) -> dict[str, Any]:
        return {"highest": self.highest}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.highest = state_dict.get("highest")
