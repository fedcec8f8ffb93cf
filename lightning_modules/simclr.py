"""The SimCLR LightningModule: encoder f, projection head g, NT-Xent over every device's negatives."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.strategies import ParallelStrategy
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn

from callbacks.logging_steps import is_logging_step
from lightning_modules.backbones import benefits_from_channels_last, build_backbone
from lightning_modules.batch_split import check_batch_split, micro_batches_per_device
from lightning_modules.gradient_cache import gradient_cached_loss
from lightning_modules.losses import nt_xent_logits
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


class ContrastiveStep(NamedTuple):
    """One training step's loss (to back-propagate), its logits and targets, and the detached
    representations of both views ([2N, feature_dim], view1's rows first) for the online probe."""

    loss: Tensor
    logits: Tensor
    targets: Tensor
    representations: Tensor


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
        micro_batch_size: images per device in one forward pass (both views of each); None is the whole
            per-device batch. Smaller holds the activations of one micro-batch only, for one more forward
            pass; the loss, its negatives and the learning rate stay those of the whole batch (gradient
            caching: lightning_modules/gradient_cache.py). Batch-norm then normalises each micro-batch on
            its own, as K = per-device batch / micro_batch_size devices would without SyncBN.
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
        micro_batch_size: int | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"--model.temperature must be > 0, got {temperature}; SimCLR uses 0.1-0.5.")
        if base_lr <= 0:
            raise ValueError(f"--model.base_lr must be > 0, got {base_lr}.")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise ValueError(
                f"--model.micro_batch_size must be >= 1 image, got {micro_batch_size}; leave it unset (null) "
                "to forward the whole per-device batch at once."
            )
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
        return self._logits_of_projections(self.projection_head(representations))

    def _logits_of_projections(self, projections: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and targets from z of both views, [2N, projection_dim] (view1's rows first).

        The gather keeps gradients, so each device's loss also trains the other devices' projections
        as negatives; with one device the gather is the identity and the code path is the same.
        """
        n, dim = projections.shape[0] // 2, projections.shape[1]
        gathered = self._gather_with_gradients(projections).reshape(-1, 2, n, dim)
        z1, z2 = projections.chunk(2)
        return nt_xent_logits(
            z1, z2, self.hparams.temperature,
            gathered_z1=gathered[:, 0].reshape(-1, dim),
            gathered_z2=gathered[:, 1].reshape(-1, dim),
            rank=self.global_rank,
        )

    def _gather_with_gradients(self, tensor: Tensor) -> Tensor:
        """Every device's rows in rank order; used outside a Trainer (a notebook) there is only this one."""
        if self._trainer is None:
            return tensor
        return self.all_gather(tensor, sync_grads=True)

    def contrastive_step(self, view1: Tensor, view2: Tensor) -> ContrastiveStep:
        """The NT-Xent loss of the batch, in one forward pass or in micro-batches (micro_batch_size).

        With micro-batches every micro-batch but the last has back-propagated when this returns; the
        backward of the returned loss adds the last one's (lightning_modules/gradient_cache.py).
        """
        micro_batch_size = self.hparams.micro_batch_size
        if micro_batch_size is not None and micro_batch_size < view1.shape[0]:
            return self._gradient_cached_step(view1, view2, micro_batch_size)
        representations = self._encode(torch.cat([view1, view2]))
        logits, targets = self._logits_of_representations(representations)
        return ContrastiveStep(F.cross_entropy(logits, targets), logits, targets, representations.detach())

    def _gradient_cached_step(self, view1: Tensor, view2: Tensor, micro_batch_size: int) -> ContrastiveStep:
        """Both views of micro_batch_size images per forward pass, like one device of a larger DDP run."""
        pairs = zip(view1.split(micro_batch_size), view2.split(micro_batch_size), strict=True)
        micro_batches = [torch.cat(pair) for pair in pairs]

        def loss_of_projections(projections: list[Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            logits, targets = self._logits_of_projections(_view_major(projections))
            return F.cross_entropy(logits, targets), (logits, targets)

        cached = gradient_cached_loss(
            self._represent_and_project, micro_batches, loss_of_projections, network=self,
            no_gradient_sync=self._no_gradient_sync, scale_gradient=self._loss_scaling(),
        )  # fmt: skip
        logits, targets = cached.extra
        return ContrastiveStep(cached.loss, logits, targets, _view_major(cached.representations))

    def _represent_and_project(self, images: Tensor) -> tuple[Tensor, Tensor]:
        representations = self._encode(images)
        return representations, self.projection_head(representations)

    def _no_gradient_sync(self) -> AbstractContextManager:
        """DDP's no_sync, through Lightning's strategy: backward passes accumulate without an all-reduce.

        The gradients are all-reduced once, in Lightning's backward of the loss training_step returns (the
        last micro-batch's). training_step runs inside DDP's forward, before DDP prepares for this step's
        backward, so the earlier backward passes would not all-reduce anyway; no_sync says so explicitly
        (tests/distributed/test_micro_batches_ddp.py counts the all-reduces).
        """
        strategy = self._trainer.strategy if self._trainer is not None else None
        return strategy.block_backward_sync() if isinstance(strategy, ParallelStrategy) else nullcontext()

    def _loss_scaling(self) -> Callable[[Tensor], Tensor]:
        """fp16's GradScaler.scale, which Lightning applies to the loss it back-propagates; else none."""
        precision = self._trainer.precision_plugin if self._trainer is not None else None
        scaler = getattr(precision, "scaler", None)
        return scaler.scale if scaler is not None else (lambda gradient: gradient)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """The loss, and the detached representations of both views for the online probe ([2N, D])."""
        if self.hparams.micro_batch_size is not None:
            self.zero_grad()  # here rather than in optimizer_zero_grad: see there
        loss, logits, targets, representations = self.contrastive_step(batch["view1"], batch["view2"])
        # Only on logging steps: a logged value is read on the host, and the bar reads it from there.
        if is_logging_step(self.trainer, batch_idx, after_optimizer_step=False):
            # How often the positive is the most similar of the 2N-1 candidates: a cheap health signal that
            # climbs quickly when learning works and sits near 1/(2N) when it does not.
            positive_accuracy = (logits.detach().argmax(dim=1) == targets).float().mean()
            self.log("train/loss", loss.detach())
            self.log("train/positive_accuracy", positive_accuracy)
            # Logged by the module rather than LearningRateMonitor, which refuses to run without a logger.
            self.log("train/lr", self.lr_schedulers().get_last_lr()[0])
        return {"loss": loss, "features": representations}

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Lightning zeroes the gradients between training_step and the backward of the loss it returns,
        which would drop the micro-batches training_step back-propagated itself: with micro_batch_size set,
        training_step zeroes them at its start instead."""
        if self.hparams.micro_batch_size is None:
            optimizer.zero_grad()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Features for the evaluation callbacks (probe, kNN), computed once for all of them."""
        images, labels = batch
        return {"features": self(images).detach(), "labels": labels}

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self.validation_step(batch, batch_idx)

    def configure_optimizers(self):
        trainer = self.trainer
        global_batch, micro_batch_size = self.hparams.batch_size, self.hparams.micro_batch_size
        check_batch_split(global_batch, trainer.world_size, micro_batch_size, trainer.accumulate_grad_batches)
        peak_lr = scaled_learning_rate(self.hparams.base_lr, global_batch)
        optimizer = build_optimizer(
            self.hparams.optimizer, self, peak_lr, self.hparams.weight_decay, self.hparams.momentum,
            self.hparams.lars_trust_ratio,
        )
        total_steps = int(trainer.estimated_stepping_batches)
        # estimated_stepping_batches skips loading the data when max_steps bounds the run; the epoch
        # length is still needed to express the warm-up in epochs.
        trainer.fit_loop.setup_data()
        warmup_steps = min(total_steps, round(self.hparams.warmup_epochs * trainer.num_training_batches))
        per_device = global_batch // trainer.world_size
        micro_batches = micro_batches_per_device(per_device, micro_batch_size)
        rank_zero_info(
            f"SimCLR: global batch {global_batch} = {trainer.world_size} device(s) x {per_device} images"
            f"{f' in {micro_batches} micro-batches of {micro_batch_size}' if micro_batches > 1 else ''}; "
            f"peak learning rate {peak_lr:.4g} = base_lr {self.hparams.base_lr} x {global_batch} / 256; "
            f"{warmup_steps} warm-up steps of {total_steps}."
        )
        # Says in one line when a resume re-plans it (another max_epochs): lightning_modules/optim.py. One
        # optimiser step per global batch (accumulation is refused above), so a step's images are the batch.
        scheduler = WarmupCosineLR(optimizer, total_steps, warmup_steps, images_per_step=global_batch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _view_major(parts: list[Tensor]) -> Tensor:
    """Rows of per-micro-batch tensors, each [2m, D] (its view1 rows, then its view2 rows), in the order of
    the one-pass step: every micro-batch's view1 rows, then every micro-batch's view2 rows."""
    halves = [part.chunk(2) for part in parts]
    return torch.cat([half[0] for half in halves] + [half[1] for half in halves])
