"""Saves a checkpoint when the run is told to stop (SIGTERM, the first Ctrl-C): stopping costs no work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from reliability.stop_signals import stop_requested_by, take_stop_signals
from reliability.stop_vote import StopVote


class CheckpointOnStop(pl.Callback):
    """On SIGTERM or the first Ctrl-C, the current step (or validation batch) finishes, last.ckpt is
    written where `--ckpt_path last` finds it, and the run exits with status 0; a second Ctrl-C stops
    at once (reliability/stop_signals.py). Under `--trainer.fast_dev_run` nothing is saved.

    The signal handlers only record the request. After each training and validation batch of fit, the
    ranks agree whether any of them was asked and then all set Lightning's SIGTERM flag, so Lightning
    stops every rank at the same step boundary with its SIGTERMException, where this callback saves.
    With one device the request is read at once; under DDP the ranks vote on the host, reading each
    boundary's vote at the next one (reliability/stop_vote.py): no device sync, no wait, and the stop
    comes one batch later. Under SLURM with auto-requeue, Lightning also requeues the job on the
    requeue signal and resumes from its own hpc checkpoint; this covers every other scheduler, a plain
    `kill` and a researcher's Ctrl-C.
    """

    def __init__(self) -> None:
        super().__init__()
        self._taking_signals = False
        self._vote: StopVote | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Every rank runs the setup hooks, in the same order, before any batch: where a group is made.
        if stage == "fit" and trainer.world_size > 1 and StopVote.can_run():
            self._vote = StopVote.on_new_gloo_group()

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_signals(trainer)

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_asked(trainer, settle=True)  # a request in the last sanity batch: stop at step 0

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

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning stops here (before the next epoch, or the test after fit) when the flag is set: a
        # request in the epoch's last batches is not left unread.
        self._stop_if_asked(trainer, settle=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._taking_signals = False  # Lightning's teardown has put the previous handlers back
        self._end_vote(after_failure=False)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._taking_signals = False
        stopping = isinstance(exception, SIGTERMException)
        # Every rank stops at the same boundary, after the same votes; a failure may be one rank's alone.
        self._end_vote(after_failure=not stopping)
        if not stopping or trainer.state.fn != "fit" or trainer.fast_dev_run:
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

    def _end_vote(self, after_failure: bool) -> None:
        if self._vote is not None:
            self._vote.close(after_failure)
            self._vote = None

    def _stop_if_asked(self, trainer: pl.Trainer, settle: bool = False) -> None:
        if not self._taking_signals:
            return
        asked = stop_requested_by() is not None
        if self._vote is not None:
            asked = self._vote.settle(asked) if settle else self._vote.cast(asked)
        elif trainer.world_size > 1:  # a strategy without torch.distributed (XLA): its own blocking vote
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
