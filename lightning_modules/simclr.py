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


class ContrastiveStep(NamedTuple):
    """One training step's loss (to back-propagate); its logits [V*N, V*M] and positive columns
    [V*N, V-1] (multi_view_logits); the detached representations h of the two large views
    ([2N, feature_dim], view1's rows first) for the online probe; the detached projections of every view
    ([V*N, projection_dim], view-major) for the health metrics."""

    loss: Tensor
    logits: Tensor
    positives: Tensor
    representations: Tensor
    projections: Tensor


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

    def contrastive_step(
        self, view1: Tensor, view2: Tensor, small_views: Tensor | None = None
    ) -> ContrastiveStep:
        """The contrastive loss of the batch, in one forward pass or in micro-batches (micro_batch_size).

        `small_views`: the small views of multi-crop, [S, N, 3, s, s] (--data.num_small_views), or None.
        With micro-batches every micro-batch but the last has back-propagated when this returns; the
        backward of the returned loss adds the last one's (lightning_modules/gradient_cache.py).
        """
        if small_views is not None and small_views.shape[0] == 0:
            small_views = None
        num_views = 2 if small_views is None else 2 + small_views.shape[0]
        micro_batch_size = self.hparams.micro_batch_size
        if micro_batch_size is not None and micro_batch_size < view1.shape[0]:
            return self._gradient_cached_step(view1, view2, small_views, num_views, micro_batch_size)
        small = None if small_views is None else small_views.flatten(0, 1)
        representations, projections = self._represent_and_project((torch.cat([view1, view2]), small))
        logits, positives = self._logits_of_projections(projections, num_views)
        loss = _contrastive_loss(logits, positives)
        return ContrastiveStep(loss, logits, positives, representations.detach(), projections.detach())

    def _gradient_cached_step(
        self, view1: Tensor, view2: Tensor, small_views: Tensor | None, num_views: int, micro_batch_size: int
    ) -> ContrastiveStep:
        """Every view of micro_batch_size images per forward pass, like one device of a larger DDP run."""
        pairs = zip(view1.split(micro_batch_size), view2.split(micro_batch_size), strict=True)
        large = [torch.cat(pair) for pair in pairs]
        small: list[Tensor | None] = [None] * len(large)
        if small_views is not None:
            small = [part.flatten(0, 1) for part in small_views.split(micro_batch_size, dim=1)]
        micro_batches = list(zip(large, small, strict=True))

        def loss_of_projections(projections: list[Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
            every_view = _view_major(projections, num_views)
            logits, positives = self._logits_of_projections(every_view, num_views)
            return _contrastive_loss(logits, positives), (logits, positives, every_view.detach())

        cached = gradient_cached_loss(
            self._represent_and_project, micro_batches, loss_of_projections, network=self,
            no_gradient_sync=self._no_gradient_sync, scale_gradient=self._loss_scaling(),
        )  # fmt: skip
        logits, positives, projections = cached.extra
        representations = _view_major(cached.representations, 2)
        return ContrastiveStep(cached.loss, logits, positives, representations, projections)

    def _represent_and_project(self, images: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor]:
        """(h of the two large views [2m, D], projections of every view [V*m, d] view-major) of
        (large views [2m, 3, S, S], small views [(V-2)*m, 3, s, s] view-major or None).

        Views of one size go through the encoder together, one size at a time (the large views as one
        batch of 2m, as without small views, then the small ones), as SwAV and solo-learn do; batch norm
        then normalises each size with its own statistics. The head, which sees no pixels, projects all
        views in one batch.
        """
        large, small = images
        representations = self._encode(large)
        if small is None:
            return representations, self.projection_head(representations)
        return representations, self.projection_head(torch.cat([representations, self._encode(small)]))

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
        """The loss, and the detached h of the two large views for the online probe ([2N, D])."""
        if self.hparams.micro_batch_size is not None:
            self.zero_grad()  # here rather than in optimizer_zero_grad: see there
        step = self.contrastive_step(batch["view1"], batch["view2"], batch.get("small_views"))
        # Only on logging steps: a logged value is read on the host, and the bar reads it from there.
        if is_logging_step(self.trainer, batch_idx, after_optimizer_step=False):
            self._log_training_health(step.loss, step.logits.detach(), step.positives, step.projections)
        return {"loss": step.loss, "features": step.representations}

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Lightning zeroes the gradients between training_step and the backward of the loss it returns,
        which would drop the micro-batches training_step back-propagated itself: with micro_batch_size set,
        training_step zeroes them at its start instead."""
        if self.hparams.micro_batch_size is None:
            optimizer.zero_grad()

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


def _view_major(parts: list[Tensor], num_views: int) -> Tensor:
    """Rows of per-micro-batch tensors, each [V*m, D] view-major (its view1 rows, its view2 rows, then its
    small views' rows), in the order of the one-pass step: every micro-batch's rows of the first view,
    then every micro-batch's rows of the second, and so on."""
    views = [part.chunk(num_views) for part in parts]
    return torch.cat([chunks[view] for view in range(num_views) for chunks in views])


def _contrastive_loss(logits: Tensor, positives: Tensor) -> Tensor:
    """Two views: NT-Xent as one cross-entropy; more: VISSL's multi-crop form, which equals it at two."""
    if positives.shape[1] == 1:
        return F.cross_entropy(logits, positives.squeeze(1))
    return multi_view_nt_xent_loss(logits, positives)
