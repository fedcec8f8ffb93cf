"""The SimCLR LightningModule: encoder f, projection head g, NT-Xent over every device's negatives."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn

from callbacks.logging_steps import is_logging_step
from lightning_modules.backbones import benefits_from_channels_last, build_backbone
from lightning_modules.health import alignment, uniformity
from lightning_modules.losses import multi_view_logits, multi_view_nt_xent_loss, multi_view_positive_accuracy
from lightning_modules.optim import (
    OptimizerName,
    TrustRatio,
    WarmupCosineLR,
    build_optimizer,
    scaled_learning_rate,
)


class ProjectionHead(nn.Sequential):
    """The MLP g(.) that maps representations to the space where the contrastive loss is applied.

    The paper's default is 2 layers (Linear-BN-ReLU-Linear) with a 128-d output; the loss is computed
    on g(h) while h, before the head, is what transfers to downstream tasks.
    """

    def __init__(
        self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, batch_norm: bool
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"projection_layers must be >= 1, got {num_layers}.")
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        layers.append(nn.Linear(width, output_dim))
        super().__init__(*layers)

    def first_layers(self, count: int) -> nn.Sequential:
        """The head's first `count` layers (each hidden layer Linear-BN-ReLU, the last one Linear), the same
        modules, not copies: what SimCLR v2 fine-tunes from (Chen et al. 2020b, Sec. 2; the official code's
        ft_proj_selector). 0 is the encoder's output, the number of layers the head's output. The modules
        keep their indices, so the slice's state-dict keys are the head's."""
        ends = [index + 1 for index, module in enumerate(self) if isinstance(module, nn.ReLU)] + [len(self)]
        if not 0 <= count <= len(ends):
            raise ValueError(f"The projection head has {len(ends)} layers; cannot take the first {count}.")
        return nn.Sequential(*list(self)[: ends[count - 1] if count else 0])


class SimCLR(pl.LightningModule):
    """SimCLR pretraining (Chen et al., 2020).

    Args:
        backbone: torchvision classification model name (resnet18, resnet50, ...), a ViT built for
            image_size (vit_tiny, vit_small, vit_base), timm/<timm model name>, or tiny_resnet.
        image_size: side of the training views; linked from the datamodule by train.py. Picks the stem
            and a ViT's patch size.
        cifar_stem: None chooses from image_size (3x3 stride-1 stem for <= 64 px); True/False forces it.
        patch_size: a ViT's patch side; None picks 4 px at 32, 8 px at 96, 16 px at 224.
        projection_hidden_dim: None uses the representation width, as the paper does.
        projection_dim: output width of the head (paper: 128).
        projection_layers: linear layers in the head (paper: 2).
        projection_batchnorm: batch-norm after each hidden layer of the head.
        temperature: NT-Xent temperature tau (paper: 0.1 for ImageNet at batch 4096, 0.5 for CIFAR).
        optimizer: lars (paper), sgd or adamw.
        base_lr: learning rate for 256 images per step; see lightning_modules/optim.py for the rule.
        weight_decay: applied to weights, not to biases and normalisation parameters.
        momentum: for LARS and SGD.
        lars_trust_ratio: LARS's trust-ratio denominator: simclr (the paper's official code, MoCo v3:
            ||g + wd w||) or bolts (Lightning Bolts, lightly, solo-learn: ||g|| + wd ||w||), to reproduce
            those libraries' runs; see lightning_modules/optim.py. LARS only.
        warmup_epochs: linear warm-up length before the cosine decay (may be fractional).
        batch_size: global batch (all devices), linked from the datamodule; sets the learning rate.
        channels_last: NHWC memory format for the encoder and its inputs (faster convolutions on tensor
            cores); None turns it on when training a convolutional network on CUDA (not a ViT).
        compile: torch.compile the encoder and the head for the run (state-dict keys are unchanged).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        image_size: int = 224,
        cifar_stem: bool | None = None,
        patch_size: int | None = None,
        projection_hidden_dim: int | None = None,
        projection_dim: int = 128,
        projection_layers: int = 2,
        projection_batchnorm: bool = True,
        temperature: float = 0.1,
        optimizer: OptimizerName = "lars",
        base_lr: float = 0.3,
        weight_decay: float = 1e-6,
        momentum: float = 0.9,
        lars_trust_ratio: TrustRatio = "simclr",
        warmup_epochs: float = 10.0,
        batch_size: int = 256,
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"--model.temperature must be > 0, got {temperature}; SimCLR uses 0.1-0.5.")
        if base_lr <= 0:
            raise ValueError(f"--model.base_lr must be > 0, got {base_lr}.")
        self.save_hyperparameters()
        self.encoder, self.feature_dim = build_backbone(backbone, image_size, cifar_stem, patch_size)
        self.projection_head = ProjectionHead(
            input_dim=self.feature_dim,
            hidden_dim=projection_hidden_dim or self.feature_dim,
            output_dim=projection_dim,
            num_layers=projection_layers,
            batch_norm=projection_batchnorm,
        )
        # Set by setup("fit"); a model loaded for evaluation keeps the default layout.
        self.uses_channels_last = False

    def setup(self, stage: str) -> None:
        """Before the strategy moves and wraps the model, so DDP sees the final parameter layout."""
        if stage != "fit":
            return
        channels_last = self.hparams.get("channels_last")
        if channels_last is None:
            channels_last = (
                self.trainer.strategy.root_device.type == "cuda" and benefits_from_channels_last(self.encoder)
            )
        if channels_last:
            self.to(memory_format=torch.channels_last)
            self.uses_channels_last = True
        if self.hparams.get("compile"):
            # nn.Module.compile compiles in place: checkpoints keep the keys of the plain model.
            self.encoder.compile()
            self.projection_head.compile()

    def _encode(self, images: Tensor) -> Tensor:
        # Inputs in the weights' layout; a mismatch would make every convolution convert them.
        if self.uses_channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.encoder(images)

    def forward(self, images: Tensor) -> Tensor:
        """Representations h = f(x), [B, feature_dim]: what downstream tasks and the probe use."""
        return self._encode(images)

    def contrastive_logits(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        """NT-Xent logits of this device's anchors against the projections of every device.

        Both views go through the network as one batch of 2N (one pass, batch-norm over both views).
        """
        return self._logits_of_representations(self._encode(torch.cat([view1, view2])))

    def _logits_of_representations(self, representations: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and targets from h of both views, [2N, feature_dim] (view1's rows first)."""
        logits, positives = self._logits_of_projections(self.projection_head(representations), num_views=2)
        return logits, positives.squeeze(1)

    def _logits_of_projections(self, projections: Tensor, num_views: int) -> tuple[Tensor, Tensor]:
        """Logits [V*N, V*M] and positive columns [V*N, V-1] from the projections of V views of N images,
        [V*N, projection_dim], view-major (multi_view_logits in lightning_modules/losses.py).

        The gather keeps gradients, so each device's loss also trains the other devices' projections
        as negatives; with one device the gather is the identity and the code path is the same.
        """
        n, dim = projections.shape[0] // num_views, projections.shape[1]
        gathered = self._gather_with_gradients(projections).reshape(-1, num_views, n, dim)
        return multi_view_logits(
            projections.reshape(num_views, n, dim), self.hparams.temperature,
            gathered_views=gathered.transpose(0, 1).reshape(num_views, -1, dim), rank=self.global_rank,
        )  # fmt: skip

    def _gather_with_gradients(self, tensor: Tensor) -> Tensor:
        """Every device's rows in rank order; used outside a Trainer (a notebook) there is only this one."""
        if self._trainer is None:
            return tensor
        return self.all_gather(tensor, sync_grads=True)

    def _projections(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, int]:
        """(h of the two large views [2N, D], projections of every view [V*N, d] view-major, V).

        Multi-crop batches also hold `small_views` [S, N, 3, s, s] (datamodules: --data.num_small_views).
        Views of one size go through the encoder together, one size at a time (the large views as one
        batch of 2N, as without small views, then the S*N small ones), as SwAV and solo-learn do; batch
        norm then normalises each size with its own statistics. The head, which sees no pixels, projects
        all views in one batch.
        """
        representations = self._encode(torch.cat([batch["view1"], batch["view2"]]))
        small_views = batch.get("small_views")
        if small_views is None or small_views.shape[0] == 0:
            return representations, self.projection_head(representations), 2
        small = self._encode(small_views.flatten(0, 1))
        projections = self.projection_head(torch.cat([representations, small]))
        return representations, projections, 2 + small_views.shape[0]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """The loss, and the detached h of the two large views for the online probe ([2N, D])."""
        representations, projections, num_views = self._projections(batch)
        logits, positives = self._logits_of_projections(projections, num_views)
        if num_views == 2:
            loss = F.cross_entropy(logits, positives.squeeze(1))
        else:
            loss = multi_view_nt_xent_loss(logits, positives)
        # Only on logging steps: a logged value is read on the host, and the bar reads it from there.
        if is_logging_step(self.trainer, batch_idx, after_optimizer_step=False):
            self._log_training_health(loss, logits.detach(), positives, projections.detach())
        return {"loss": loss, "features": representations.detach()}

    def _log_training_health(
        self, loss: Tensor, logits: Tensor, positives: Tensor, projections: Tensor
    ) -> None:
        # How often a positive is more similar than every negative: a cheap health signal that climbs
        # quickly when learning works and sits near 1/(2N) when it does not (two views).
        self.log("train/loss", loss.detach())
        self.log("train/positive_accuracy", multi_view_positive_accuracy(logits, positives))
        # Alignment and uniformity (Wang & Isola 2020) of the two large views' projections on this device,
        # where the loss acts: which half of the contrastive objective is failing.
        n = positives.shape[0] // (positives.shape[1] + 1)
        z1, z2 = projections[:n], projections[n : 2 * n]
        self.log("train/alignment", alignment(z1, z2))
        self.log("train/uniformity", (uniformity(z1) + uniformity(z2)) / 2)
        # Logged by the module rather than LearningRateMonitor, which refuses to run without a logger.
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0])

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Features for the evaluation callbacks (probe, kNN), computed once for all of them."""
        images, labels = batch
        return {"features": self(images).detach(), "labels": labels}

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self.validation_step(batch, batch_idx)

    def configure_optimizers(self):
        trainer = self.trainer
        images_per_step = self.hparams.batch_size * trainer.accumulate_grad_batches
        peak_lr = scaled_learning_rate(self.hparams.base_lr, images_per_step)
        optimizer = build_optimizer(
            self.hparams.optimizer, self, peak_lr, self.hparams.weight_decay, self.hparams.momentum,
            self.hparams.lars_trust_ratio,
        )
        total_steps = int(trainer.estimated_stepping_batches)
        # estimated_stepping_batches skips loading the data when max_steps bounds the run; the epoch
        # length is still needed to express the warm-up in epochs.
        trainer.fit_loop.setup_data()
        steps_per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        warmup_steps = min(total_steps, round(self.hparams.warmup_epochs * steps_per_epoch))
        accumulation = trainer.accumulate_grad_batches
        rank_zero_info(
            f"SimCLR: global batch {self.hparams.batch_size} = {trainer.world_size} device(s) x "
            f"{self.hparams.batch_size // trainer.world_size} images"
            f"{f', {accumulation} batches accumulated per step' if accumulation > 1 else ''}; "
            f"peak learning rate {peak_lr:.4g} = base_lr {self.hparams.base_lr} x {images_per_step} / 256; "
            f"{warmup_steps} warm-up steps of {total_steps}."
        )
        # Says in one line when a resume re-plans it (another max_epochs): lightning_modules/optim.py.
        scheduler = WarmupCosineLR(optimizer, total_steps, warmup_steps, images_per_step)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
