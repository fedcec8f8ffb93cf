"""A callback for the tests that start processes with `ddp_spawn`: each ends its process group itself."""

from __future__ import annotations

import pytorch_lightning as pl

from reliability.process_group import destroy_process_group_if_any


class DestroyProcessGroupAtTeardown(pl.Callback):
    """Lightning's last hook of fit runs after every collective of the run, so the group can go there."""

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        destroy_process_group_if_any()
