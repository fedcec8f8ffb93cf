"""Gradient caching gives the parameters the gradient of the whole batch's loss, whatever the network holds:
random layers, batch-norm, loss scaling. Checked against the same micro-batches forwarded once with
gradients and one backward of the loss, in float64."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from lightning_modules.gradient_cache import gradient_cached_loss
from lightning_modules.losses import nt_xent_loss

MICRO_BATCHES, ROWS, FEATURES = 3, 4, 6
pytestmark = pytest.mark.usefixtures("one_cpu_thread")


class Network(nn.Module):
    """A representation layer (with dropout or batch-norm) and a projection layer."""

    def __init__(self, middle: nn.Module) -> None:
        super().__init__()
        self.represent = nn.Sequential(nn.Linear(FEATURES, 8), middle, nn.ReLU())
        self.project = nn.Linear(8, 5)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        representations = self.represent(inputs)
        return representations, self.project(representations)


def loss_of_projections(projections: list[Tensor]) -> tuple[Tensor, Tensor]:
    """NT-Xent with each micro-batch's rows split into two views; returns the projections as the extra."""
    z = torch.cat(projections)
    return nt_xent_loss(*z.chunk(2), temperature=0.5), z


def micro_batches() -> list[Tensor]:
    generator = torch.Generator().manual_seed(1)
    return list(torch.randn(MICRO_BATCHES, ROWS, FEATURES, generator=generator, dtype=torch.float64))


def reference_step(network: Network, inputs: list[Tensor]) -> Tensor:
    """Each micro-batch forwarded once with gradients, then one backward of the loss over all of them."""
    loss, _ = loss_of_projections([network(x)[1] for x in inputs])
    loss.backward()
    return loss.detach()


def gradients(network: nn.Module) -> dict[str, Tensor]:
    return {name: parameter.grad.clone() for name, parameter in network.named_parameters()}


def test_dropout_draws_the_same_masks_in_both_passes() -> None:
    reference = Network(nn.Dropout(p=0.5)).double()
    cached = copy.deepcopy(reference)
    torch.manual_seed(0)
    expected_loss = reference_step(reference, micro_batches())
    state_after_reference = torch.get_rng_state()
    torch.manual_seed(0)
    result = gradient_cached_loss(cached, micro_batches(), loss_of_projections, network=cached)
    result.loss.backward()
    torch.testing.assert_close(result.loss, expected_loss)
    for name, expected in gradients(reference).items():
        torch.testing.assert_close(gradients(cached)[name], expected, msg=name)
    # The masks were drawn once: the generator continues as after the reference's single pass.
    assert torch.equal(torch.get_rng_state(), state_after_reference)


def test_batch_norm_updates_its_running_statistics_once_per_micro_batch() -> None:
    reference = Network(nn.BatchNorm1d(8, momentum=0.3)).double()
    cached = copy.deepcopy(reference)
    reference_step(reference, micro_batches())
    result = gradient_cached_loss(cached, micro_batches(), loss_of_projections, network=cached)
    result.loss.backward()
    for name, expected in gradients(reference).items():
        torch.testing.assert_close(gradients(cached)[name], expected, msg=name)
    layer, expected_layer = cached.represent[1], reference.represent[1]
    assert layer.track_running_stats
    assert int(layer.num_batches_tracked) == MICRO_BATCHES == int(expected_layer.num_batches_tracked)
    torch.testing.assert_close(layer.running_mean, expected_layer.running_mean)
    torch.testing.assert_close(layer.running_var, expected_layer.running_var)


def test_representations_come_from_the_pass_without_gradients() -> None:
    network = Network(nn.Identity()).double()
    inputs = micro_batches()
    result = gradient_cached_loss(network, inputs, loss_of_projections, network=network)
    for representations, x in zip(result.representations, inputs, strict=True):
        assert not representations.requires_grad
        torch.testing.assert_close(representations, network(x)[0])
    torch.testing.assert_close(result.extra, torch.cat([network(x)[1] for x in inputs]))


def test_earlier_micro_batches_are_scaled_like_the_loss_the_caller_back_propagates() -> None:
    """fp16's GradScaler multiplies the loss Lightning back-propagates; the micro-batches back-propagated
    inside the step must be multiplied alike, or the unscaled gradient would mix two scales."""
    scale = 1024.0
    reference = Network(nn.Identity()).double()
    scaled = copy.deepcopy(reference)
    reference_step(reference, micro_batches())
    result = gradient_cached_loss(
        scaled, micro_batches(), loss_of_projections, network=scaled, scale_gradient=lambda g: g * scale
    )
    (result.loss * scale).backward()
    for name, expected in gradients(reference).items():
        torch.testing.assert_close(gradients(scaled)[name] / scale, expected, msg=name)


def test_no_gradient_sync_surrounds_every_backward_but_the_last() -> None:
    network = Network(nn.Identity()).double()
    gradient_on_entry: list[bool] = []

    class RecordGradients:
        def __enter__(self) -> None:
            gradient_on_entry.append(network.project.weight.grad is not None)

        def __exit__(self, *exc: object) -> None:
            assert network.project.weight.grad is not None  # the backward ran inside

    result = gradient_cached_loss(
        network, micro_batches(), loss_of_projections, network=network, no_gradient_sync=RecordGradients
    )
    assert gradient_on_entry == [False, True]  # entered for micro-batches 1 and 2, not for the last
    before = network.project.weight.grad.clone()
    result.loss.backward()
    assert not torch.equal(network.project.weight.grad, before)


def test_bf16_projections_get_their_gradient_cached_in_float32() -> None:
    network = Network(nn.Identity())
    inputs = [x.float() for x in micro_batches()]
    seen: list[torch.dtype] = []

    def loss_recording_dtypes(projections: list[Tensor]) -> tuple[Tensor, Tensor]:
        seen.extend(p.dtype for p in projections)
        return loss_of_projections(projections)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = gradient_cached_loss(network, inputs, loss_recording_dtypes, network=network)
    assert seen == [torch.float32] * MICRO_BATCHES
    assert result.loss.dtype == torch.float32 and torch.isfinite(result.loss)
    result.loss.backward()
    assert network.project.weight.grad.abs().sum() > 0
