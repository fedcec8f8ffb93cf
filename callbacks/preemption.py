"""Saves a checkpoint when the run is told to stop (SIGTERM, the first Ctrl-C): stopping costs no work."""

from __future__ import annotations

import threading
from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import LightningEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from reliability.stop_signals import ctrl_c_saves, ctrl_c_stops_at_once, ctrl_c_was_received


class CheckpointOnStop(pl.Callback):
    """On SIGTERM or the first Ctrl-C, writes last.ckpt where `--ckpt_path last` finds it, then lets the
    run exit with status 0; a second Ctrl-C stops at once (reliability/stop_signals.py).

    Lightning's own SIGTERM handler finishes the current step and raises SIGTERMException (a
    SystemExit) at the step boundary; this callback saves at that point. Under SLURM with
    auto-requeue, Lightning also requeues the job on the requeue signal and resumes from its own
    hpc checkpoint; this covers every other scheduler, a plain `kill` and a researcher's Ctrl-C.
    Under `--trainer.fast_dev_run` nothing is saved: it writes nothing.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there
            ctrl_c_saves(not _gets_sigterm_from_rank_zero(trainer), trainer.is_global_zero)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ctrl_c_stops_at_once()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        ctrl_c_stops_at_once()
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit" or trainer.fast_dev_run:
            return
        path = _last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        signal_name = "Ctrl-C" if ctrl_c_was_received() else "SIGTERM"
        rank_zero_info(
            f"{signal_name} received: saved {path} at step {trainer.global_step}; resume with "
            "--ckpt_path last (and the run's --config)."
        )


def _gets_sigterm_from_rank_zero(trainer: pl.Trainer) -> bool:
    """A rank that Lightning's launcher started: rank 0 forwards SIGTERM to it (its notifier's kill)."""
    environment = getattr(trainer.strategy, "cluster_environment", None)  # None on one device
    return (
        trainer.global_rank != 0
        and type(environment) is LightningEnvironment
        and environment.creates_processes_externally
    )


def _last_checkpoint_path(trainer: pl.Trainer) -> str:
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return str(Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt")
    return str(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")
