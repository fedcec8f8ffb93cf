"""Saves a checkpoint when the run is told to stop (SIGTERM), so pre-emption costs no work."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException


class CheckpointOnSigterm(pl.Callback):
    """On SIGTERM, writes last.ckpt where `--ckpt_path last` finds it, then lets the run exit with status 0.

    Lightning's own SIGTERM handler finishes the current step and raises SIGTERMException (a
    SystemExit) at the step boundary; this callback saves at that point. Under SLURM with
    auto-requeue, Lightning also requeues the job on the requeue signal and resumes from its own
    hpc checkpoint; this covers every other scheduler and a plain `kill`.
    """

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        path = _last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        rank_zero_info(
            f"SIGTERM received: saved {path} at step {trainer.global_step}; resume with "
            "--ckpt_path last (and the run's --config)."
        )


def _last_checkpoint_path(trainer: pl.Trainer) -> str:
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return str(Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt")
    return str(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")
