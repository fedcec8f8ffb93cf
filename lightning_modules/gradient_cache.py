"""Gradient caching (Gao et al. 2021): a contrastive loss over a batch larger than one forward pass fits.

A contrastive loss couples every image of the batch with every other, so it cannot be split into
micro-batches whose losses are summed: gradient accumulation contrasts each micro-batch with itself
only, another method. Instead, a forward pass without gradients over every micro-batch gives the
projections; the loss over all of them gives its gradient with respect to each projection; each
micro-batch is then forwarded again with gradients and back-propagated with its slice of that
gradient. The parameters receive the gradient of the whole batch's loss while the activations held are
those of one micro-batch; the price is one more forward pass.

Two things make the second forward equal the first: random layers (dropout, drop-path) replay the
random state the first pass drew from, and batch-norm layers update their running statistics in the
second pass only, so each micro-batch updates them once, as a forward pass of it alone would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import get_device_states, set_device_states

Extra = TypeVar("Extra")
Inputs = TypeVar("Inputs", Tensor, tuple[Tensor | None, ...])
# One micro-batch of inputs (a tensor, or a tuple of tensors: multi-crop's views of two sizes) ->
# (representations h, projections z), both [rows, features].
Forward = Callable[[Inputs], tuple[Tensor, Tensor]]
# Every micro-batch's projections, in order -> (the loss over all of them, anything else to keep).
LossOfProjections = Callable[[list[Tensor]], tuple[Tensor, Extra]]


@dataclass(frozen=True)
class CachedGradientLoss(Generic[Extra]):
    """What a gradient-cached step leaves for the caller.

    loss: the whole batch's loss (its value). Every micro-batch but the last has already back-propagated
        its share into the parameters' .grad; calling backward() on this tensor adds the last one's, so a
        caller that hands it to the usual backward (Lightning's, with its loss scaling and DDP gradient
        all-reduce) completes the gradient exactly once.
    representations: each micro-batch's h from the pass without gradients (equal to the second pass's).
    extra: what loss_of_projections returned beside the loss, computed on detached projections.
    """

    loss: Tensor
    representations: list[Tensor]
    extra: Extra


def gradient_cached_loss(
    forward: Forward[Inputs],
    micro_batches: Sequence[Inputs],
    loss_of_projections: LossOfProjections[Extra],
    network: nn.Module,
    no_gradient_sync: Callable[[], AbstractContextManager] = nullcontext,
    scale_gradient: Callable[[Tensor], Tensor] = lambda gradient: gradient,
) -> CachedGradientLoss[Extra]:
    """The loss over all micro_batches, with all but the last micro-batch's backward already done.

    Args:
        forward: runs one micro-batch through the network (called twice per micro-batch).
        micro_batches: the inputs of one step, in as many tensors as forward passes; any sizes.
        loss_of_projections: the loss of the whole batch from the list of every micro-batch's projections,
            [rows_k, D] each, in at least float32; it may communicate (gather across devices).
        network: the modules forward runs, whose batch-norm layers the first pass must leave untouched.
        no_gradient_sync: entered around the backward passes done here, so that under DDP only the
            caller's final backward all-reduces the gradients (Lightning: strategy.block_backward_sync).
        scale_gradient: the loss scaling the caller's backward applies (fp16's GradScaler.scale), so
            that the micro-batches back-propagated here are scaled like the last one.
    """
    random_states = []
    first_pass = []
    with torch.no_grad(), running_statistics_left_alone(network):
        for inputs in micro_batches:
            random_states.append(RandomState(inputs))
            first_pass.append(forward(inputs))
    # Leaves in at least float32: the gradients cached on them must not underflow in bf16 or fp16.
    projections = [
        z.detach().to(torch.promote_types(z.dtype, torch.float32)).requires_grad_() for _, z in first_pass
    ]
    loss, extra = loss_of_projections(projections)
    gradients = torch.autograd.grad(loss, projections)
    *earlier, last = zip(micro_batches, random_states, gradients, strict=True)
    for inputs, random_state, gradient in earlier:
        with random_state.replayed(), no_gradient_sync():
            _, z = forward(inputs)
            torch.autograd.backward(z, scale_gradient(gradient).to(z.dtype))
    inputs, random_state, gradient = last
    with random_state.replayed():
        _, z = forward(inputs)
    # The caller's backward of this tensor carries the last micro-batch's gradient; its value is the loss.
    surrogate = (z.to(gradient.dtype) * gradient).sum()
    loss_and_last_gradient = loss.detach() + (surrogate - surrogate.detach())
    return CachedGradientLoss(loss_and_last_gradient, [h for h, _ in first_pass], extra)


class RandomState:
    """The random generators' state before a micro-batch's first forward, to replay in its second.

    Dropout and drop-path then draw the same masks in both passes, so the second pass computes the
    projections whose gradient was cached. Replaying inside fork_rng leaves the generators where the
    first pass left them: the run draws each mask once, as without micro-batches.
    """

    def __init__(self, inputs: Tensor | tuple[Tensor | None, ...]) -> None:
        parts = inputs if isinstance(inputs, tuple) else (inputs,)
        tensors = [tensor for tensor in parts if tensor is not None]
        self.cpu_state = torch.get_rng_state()
        self.devices, self.device_states = get_device_states(*tensors)
        device = tensors[0].device
        # "cpu" (with no devices) forks the CPU generator alone; None, which newer torch reads as "the
        # accelerator", fails in torch 2.11's fork_rng.
        self.device_type = device.type

    @contextmanager
    def replayed(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.devices, device_type=self.device_type):
            torch.set_rng_state(self.cpu_state)
            set_device_states(self.devices, self.device_states, device_type=self.device_type)
            yield


@contextmanager
def running_statistics_left_alone(network: nn.Module) -> Iterator[None]:
    """Batch-norm layers in training mode normalise with batch statistics, as always, but do not update
    their running estimates (nor num_batches_tracked): the second pass over the micro-batch does."""
    layers = [
        layer
        for layer in network.modules()
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.training and layer.track_running_stats
    ]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
