"""Under DDP, val/rankme is the rank of the whole validation split, not of one rank's share.

`ddp_spawn` on gloo, as in test_ddp_equivalence.py; each rank validates half of the rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
from torch.utils.data import DataLoader, TensorDataset

from callbacks.rankme import RankMeMonitor
from tests.callbacks.test_rankme import FeaturesPerEpoch, expected_rankme, features_of
from tests.distributed.process_group import DestroyProcessGroupAtTeardown

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*ddp_spawn.*"),
    pytest.mark.filterwarnings("ignore:.*sync_dist=True.*"),
]


def test_two_processes_measure_the_rank_of_every_validation_row(tmp_path: Path) -> None:
    rows = features_of(24)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[RankMeMonitor(), DestroyProcessGroupAtTeardown()],
    )  # fmt: skip
    logged = trainer.validate(FeaturesPerEpoch(), DataLoader(TensorDataset(rows), batch_size=4))[0]
    assert logged["val/rankme"] == pytest.approx(expected_rankme(rows), rel=1e-5)
    # The premise: one rank's half alone has another rank (the sampler deals rows 0, 2, 4, ... to rank 0).
    assert logged["val/rankme"] != pytest.approx(expected_rankme(rows[::2]), rel=1e-3)
