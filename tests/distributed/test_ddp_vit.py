"""A real ViT under DDP (gloo, CPU): two processes take exactly the step of one on all the images.

A ViT normalises with LayerNorm, per image, so unlike a ResNet it needs no stand-in encoder: only the
projection head's batch-norm is switched off. The gather and the loss are backbone-agnostic; this
checks that nothing in the ViT (class token, position embedding, attention) breaks that.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lightning_modules.simclr import SimCLR
from tests.distributed.test_ddp_equivalence import GLOBAL_BATCH, IMAGE_SIZE, run_two_processes_and_one

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*ddp_spawn.*"),
    pytest.mark.filterwarnings("ignore:.*sync_dist=True.*"),
]


def test_two_processes_train_a_vit_like_one_process(tmp_path) -> None:
    pl.seed_everything(0, verbose=False)
    model = SimCLR(
        backbone="vit_micro", image_size=IMAGE_SIZE, projection_batchnorm=False, temperature=0.2,
        optimizer="adamw", base_lr=3e-4, weight_decay=0.1, batch_size=GLOBAL_BATCH, warmup_epochs=0.0,
    )
    assert not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())
    one, ranks = run_two_processes_and_one(tmp_path, model)
    mean_loss = torch.stack([rank["loss"] for rank in ranks]).mean()
    torch.testing.assert_close(mean_loss, one["loss"], rtol=1e-5, atol=1e-6)
    assert {"encoder.class_token", "encoder.encoder.pos_embedding"} <= one["gradients"].keys()
    for name, expected in one["gradients"].items():
        assert expected.abs().max() > 0, f"{name} got no gradient; the comparison would be vacuous"
        for rank in ranks:
            torch.testing.assert_close(rank["gradients"][name], expected, rtol=1e-4, atol=1e-6, msg=name)
