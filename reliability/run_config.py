"""The resolved config of every invocation, saved in the run folder whatever logger the run uses.

Lightning's SaveConfigCallback writes into `trainer.log_dir`: the run folder only for W&B (train.py
points its save_dir there). With `--trainer.logger CSVLogger` it was `<save_dir>/<name>/version_N/`
(the working directory when no save_dir is given), so config.yaml was missing from the run folder
(which then was not protected as a run, see reliability/run_folder.py) and each resume's
config-resumed-*.yaml landed in a new version folder instead of beside config.yaml.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.cli import SaveConfigCallback

from reliability.code_version import code_version


class SaveAndLogConfig(SaveConfigCallback):
    """Writes the config into the run folder (`trainer.default_root_dir`), and sends it with the git
    commit to the loggers. Needs `save_to_log_dir=False`, which keeps Lightning's own copy from being
    written as well."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        path = Path(trainer.default_root_dir) / self.config_filename
        # Decided on rank 0 and shared, so that every rank raises or none does.
        exists = trainer.strategy.broadcast(path.exists() if trainer.is_global_zero else False)
        if exists and not self.overwrite:
            raise FileExistsError(
                f"'{path}' exists already and is never overwritten; start the run in another folder."
            )
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile
            )
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not trainer.loggers:
            return
        config = self.config.clone()
        config.pop("config", None)  # the paths of the --config files given, not settings
        record = {"config": config.as_dict(), "code": code_version()}
        for logger in trainer.loggers:
            logger.log_hyperparams(record)


# The save_dir a logger gets when none is given: `--trainer.logger CSVLogger` parses to save_dir ".".
UNCHOSEN_SAVE_DIRS = (None, ".", "./")


def place_logs_in_run_dir(logger: object, run_dir: str) -> None:
    """Loggers given without a save_dir (CSVLogger, TensorBoardLogger) write into the run folder, not
    into the working directory; W&B always does (a saved config may name the folder of another run)."""
    loggers = logger if isinstance(logger, list) else [logger]
    for each in loggers:
        init_args = each.get("init_args") if isinstance(each, Namespace) else None
        if not isinstance(init_args, Namespace) or "save_dir" not in init_args:
            continue
        if each.class_path.endswith("WandbLogger") or init_args.save_dir in UNCHOSEN_SAVE_DIRS:
            init_args.save_dir = run_dir
