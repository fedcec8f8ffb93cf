"""ModelCheckpoint whose last.ckpt always holds the newest state at the end of every epoch and of fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint, except that `save_last` means: last.ckpt is the run's state at every epoch end.

    Lightning's ModelCheckpoint rewrites last.ckpt at an epoch end only when that section has just
    saved another checkpoint at the same step, and skips its final save once it has written last.ckpt
    at all. train.py writes last.ckpt from two sections (the best-by-validation one, and every N steps);
    when N does not divide the steps and validation does not improve, last.ckpt ended fit N - 1 steps
    old, and `evaluate.py` or `--ckpt_path last` read a state the run had moved past. Here, at the end
    of every training epoch (after its validation) and of fit, a section whose last.ckpt was not
    written at the current step writes it, unless another section of this class has just written the
    same file. Under `--trainer.fast_dev_run` nothing is written, as Lightning documents for it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The step at which this section last wrote last.ckpt, and the step the invocation started at.
        self.last_written_at: int | None = None
        self._started_at: int | None = None

    def _generate_state_key(self, **kwargs: object) -> str:
        """ModelCheckpoint's key: checkpoints saved before this class existed restore their best scores."""
        return f"{ModelCheckpoint.__qualname__}{kwargs!r}"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._started_at = trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._bring_last_up_to_date(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not Lightning's: it writes last.ckpt under fast_dev_run, and only if it never wrote it before.
        self._bring_last_up_to_date(trainer)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self.last_written_at = trainer.global_step

    def last_path(self) -> Path | None:
        """Where this section writes last.ckpt (None without a folder yet)."""
        if not self.save_last or self.dirpath is None:
            return None
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def _bring_last_up_to_date(self, trainer: pl.Trainer) -> None:
        if (
            not self.save_last
            or trainer.fast_dev_run
            or trainer.sanity_checking
            or trainer.state.fn != "fit"
            or trainer.global_step == self._started_at  # nothing trained in this invocation
        ):
            return
        path = self.last_path()
        for section in trainer.checkpoint_callbacks:
            if (
                isinstance(section, RunCheckpoint)
                and section.last_written_at == trainer.global_step
                and section.last_path() == path
            ):
                return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
