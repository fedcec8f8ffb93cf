"""Saves a checkpoint when the run is told to stop (SIGTERM, the first Ctrl-C): stopping costs no work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from reliability.stop_signals import stop_requested_by, take_stop_signals


class CheckpointOnStop(pl.Callback):
    """On SIGTERM or the first Ctrl-C, the current step (or validation batch) finishes, last.ckpt is
    written where `--ckpt_path last` finds it, and the run exits with status 0; a second Ctrl-C stops
    at once (reliability/stop_signals.py). Under `--trainer.fast_dev_run` nothing is saved.

    The signal handlers only record the request. After each training and validation batch of fit, the
    ranks agree whether any of them was asked (one all-reduce of a flag; none with one device) and then
    all set Lightning's SIGTERM flag, so Lightning stops every rank at the same step boundary with its
    SIGTERMException, where this callback saves. Under SLURM with auto-requeue, Lightning also requeues
    the job on the requeue signal and resumes from its own hpc checkpoint; this covers every other
    scheduler, a plain `kill` and a researcher's Ctrl-C.
    """

    def __init__(self) -> None:
        super().__init__()
        self._taking_signals = False

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_signals(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_signals(trainer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._stop_if_asked(trainer)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if trainer.state.fn == "fit":
            self._stop_if_asked(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._taking_signals = False  # Lightning's teardown has put the previous handlers back

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._taking_signals = False
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit" or trainer.fast_dev_run:
            return
        path = _last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        rank_zero_info(
            f"{stop_requested_by() or 'SIGTERM'} received: saved {path} at step {trainer.global_step}; "
            "resume with --ckpt_path last (and the run's --config)."
        )

    def _take_signals(self, trainer: pl.Trainer) -> None:
        """After Lightning installed its handlers for this fit (it restores the previous ones at the end)."""
        if not self._taking_signals:
            self._taking_signals = take_stop_signals(announces=trainer.is_global_zero)

    def _stop_if_asked(self, trainer: pl.Trainer) -> None:
        if not self._taking_signals:
            return
        asked = stop_requested_by() is not None
        if trainer.world_size > 1:
            asked = trainer.strategy.reduce_boolean_decision(asked, all=False)
        if asked:
            # Lightning's flag, which it reads at the step boundary (and after each validation batch);
            # set on every rank at once, it stops them together.
            trainer._signal_connector.received_sigterm = True


def _last_checkpoint_path(trainer: pl.Trainer) -> str:
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return str(Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt")
    return str(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")
