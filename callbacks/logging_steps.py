"""Which training steps log: the only steps that may wait for the device to read a value.

Reading a tensor on the host (`.item()`, `float(t)`) stalls the host until the device has finished every
queued kernel, so the device then idles while the host prepares the next step. The module and the
default callbacks therefore compute and log their training metrics only on the steps this rule picks.
"""

from __future__ import annotations

import pytorch_lightning as pl


def is_logging_step(trainer: pl.Trainer, batch_idx: int, after_optimizer_step: bool) -> bool:
    """Every `log_every_n_steps` optimiser steps (the steps Lightning sends to the loggers), the last batch
    of an epoch and the last step of the run (so a short run still reports its metrics).

    after_optimizer_step: True in on_train_batch_end, where `trainer.global_step` already counts this
    batch's step; False in training_step.
    """
    steps = trainer.global_step + (0 if after_optimizer_step else 1)
    every = trainer.log_every_n_steps
    return (
        (every > 0 and steps % every == 0)
        or steps == trainer.max_steps
        or batch_idx + 1 == trainer.num_training_batches
    )
