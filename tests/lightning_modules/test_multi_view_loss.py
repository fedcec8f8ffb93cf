"""The multi-crop loss: VISSL's per-pair form, checked against the definition one pair at a time."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.losses import (
    multi_view_logits,
    multi_view_nt_xent_loss,
    multi_view_positive_accuracy,
    nt_xent_logits,
    nt_xent_loss,
)
from tests.op_counts import count_aten_ops


def reference_multi_view(views: torch.Tensor, temperature: float) -> torch.Tensor:
    """The definition in float64, one (anchor, positive) pair at a time: the positive against the views of
    every other image, the anchor's other positives left out."""
    num_views, n, _ = views.shape
    z = F.normalize(views.double(), dim=2)
    losses = []
    for v in range(num_views):
        for i in range(n):
            others = [(u, k) for u in range(num_views) for k in range(n) if k != i]
            negatives = [z[v, i] @ z[u, k] / temperature for u, k in others]
            for w in range(num_views):
                if w == v:
                    continue
                positive = z[v, i] @ z[w, i] / temperature
                losses.append(torch.logsumexp(torch.stack([positive, *negatives]), 0) - positive)
    return torch.stack(losses).mean()


def multi_view_loss(views: torch.Tensor, temperature: float, **kwargs) -> torch.Tensor:
    return multi_view_nt_xent_loss(*multi_view_logits(views, temperature, **kwargs))


@pytest.mark.parametrize("num_views,n,dim", [(3, 2, 4), (4, 5, 8), (6, 4, 16)])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_matches_the_per_pair_reference(num_views: int, n: int, dim: int, temperature: float) -> None:
    views = torch.randn(num_views, n, dim, generator=torch.Generator().manual_seed(num_views * 100 + n))
    actual = multi_view_loss(views, temperature)
    assert actual.dtype == torch.float32
    expected = reference_multi_view(views, temperature)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.01, 0.1, 0.5, 1.0])
def test_two_views_are_the_two_view_nt_xent(temperature: float) -> None:
    z1, z2 = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(3))
    logits, positives = multi_view_logits(torch.stack([z1, z2]), temperature)
    two_view_logits, targets = nt_xent_logits(z1, z2, temperature)
    torch.testing.assert_close(logits, two_view_logits)
    assert positives.squeeze(1).tolist() == targets.tolist()
    torch.testing.assert_close(multi_view_nt_xent_loss(logits, positives), nt_xent_loss(z1, z2, temperature))
    torch.testing.assert_close(
        multi_view_nt_xent_loss(logits, positives), F.cross_entropy(two_view_logits, targets)
    )


def test_identical_orthogonal_views_give_the_analytic_value() -> None:
    # Every positive at similarity 1/tau, the V (N - 1) negatives at 0: log(1 + V (N - 1) exp(-1/tau)).
    num_views, n, temperature = 4, 5, 0.5
    views = torch.eye(n, 8).expand(num_views, n, 8)
    expected = math.log(1 + num_views * (n - 1) * math.exp(-1 / temperature))
    assert multi_view_loss(views, temperature).item() == pytest.approx(expected, rel=1e-6)


def test_positive_columns_are_the_other_views_of_the_same_image_in_view_order() -> None:
    logits, positives = multi_view_logits(torch.randn(3, 2, 4), 0.5)
    assert logits.shape == (6, 6) and torch.isinf(logits.diagonal()).all()
    # Rows: view 0 of images 0 and 1, then view 1, then view 2; columns alike.
    assert positives.tolist() == [[2, 4], [3, 5], [0, 4], [1, 5], [0, 2], [1, 3]]


def test_shards_with_gathered_negatives_average_to_the_single_device_loss() -> None:
    world_size, num_views, n, dim = 2, 4, 3, 5
    views = torch.randn(num_views, world_size * n, dim)
    single = multi_view_loss(views, 0.3)
    per_rank = [
        multi_view_loss(views[:, r * n : (r + 1) * n], 0.3, gathered_views=views, rank=r)
        for r in range(world_size)
    ]
    torch.testing.assert_close(torch.stack(per_rank).mean(), single)
    _, positives = multi_view_logits(views[:, n:], 0.3, gathered_views=views, rank=1)
    assert positives[0].tolist() == [9, 15, 21]  # view 0 of rank 1's first image: image 3 of views 1-3


def test_gradient_matches_finite_differences() -> None:
    views = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: multi_view_loss(v, 0.2), (views,))


def test_positive_accuracy_with_two_views_is_how_often_the_positive_is_nearest() -> None:
    z1, noise = torch.randn(2, 32, 8, generator=torch.Generator().manual_seed(1))
    logits, positives = multi_view_logits(torch.stack([z1, z1 + 0.8 * noise]), 0.5)
    expected = (logits.argmax(dim=1) == positives.squeeze(1)).float().mean()
    assert multi_view_positive_accuracy(logits, positives) == expected
    assert 0.0 < expected < 1.0  # neither extreme, so the comparison means something


def test_bf16_inputs_under_autocast_are_computed_in_float32() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = multi_view_logits(torch.randn(4, 8, 16).bfloat16(), 0.1)
    assert logits.dtype == torch.float32


def test_the_loss_never_makes_the_host_wait_for_the_device() -> None:
    views = torch.randn(6, 4, 8, requires_grad=True)

    def step() -> None:
        logits, positives = multi_view_logits(views, 0.5)
        multi_view_nt_xent_loss(logits, positives).backward()

    assert count_aten_ops(step).host_syncs() == 0


def test_rejects_a_single_view() -> None:
    with pytest.raises(ValueError, match=r"\[V, N, D\] with V >= 2"):
        multi_view_logits(torch.randn(1, 3, 4), 0.1)
