import math

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.losses import nt_xent_logits, nt_xent_loss


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The paper's definition, one anchor at a time, in float64."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        similarities = torch.stack([z[i] @ z[k] / temperature for k in range(2 * n) if k != i])
        positive_similarity = z[i] @ z[positive] / temperature
        losses.append(-(positive_similarity - torch.logsumexp(similarities, dim=0)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("n,dim", [(1, 3), (4, 8), (7, 16), (16, 128)])
@pytest.mark.parametrize("temperature", [0.01, 0.1, 0.5, 1.0])
def test_matches_per_anchor_reference(n: int, dim: int, temperature: float) -> None:
    generator = torch.Generator().manual_seed(n * 1000 + dim)
    z1, z2 = torch.randn(2, n, dim, generator=generator)
    expected = reference_nt_xent(z1, z2, temperature)
    actual = nt_xent_loss(z1, z2, temperature)
    assert actual.dtype == torch.float32
    assert torch.isfinite(actual)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_identical_orthogonal_views_give_analytic_value() -> None:
    # Positive similarity 1/tau, every negative 0: loss = log(1 + (2N - 2) exp(-1/tau)).
    n, temperature = 5, 0.5
    z = torch.eye(n, 8)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / temperature))
    assert nt_xent_loss(z, z.clone(), temperature).item() == pytest.approx(expected, rel=1e-6)


def test_identical_views_score_far_below_random_views() -> None:
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 32, 64, generator=generator)
    # At temperature 1 unrelated views are barely distinguishable from the 2N - 2 negatives, so the
    # loss sits near log(2N - 1); at 0.1 identical views make it almost 0.
    assert nt_xent_loss(z1, z2, 1.0).item() == pytest.approx(math.log(63), abs=0.05)
    identical = nt_xent_loss(z1, z1.clone(), 0.1)
    unrelated = nt_xent_loss(z1, z2, 0.1)
    assert identical.item() < 0.01 * unrelated.item()


def test_stable_at_low_temperature_with_large_similarities() -> None:
    z1 = torch.randn(64, 32) * 1e3
    loss = nt_xent_loss(z1, z1 + 1e-3 * torch.randn_like(z1), 0.01)
    assert torch.isfinite(loss)


def test_bf16_inputs_under_autocast_are_computed_in_float32() -> None:
    z1, z2 = torch.randn(2, 8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = nt_xent_logits(z1.bfloat16(), z2.bfloat16(), 0.1)
    assert logits.dtype == torch.float32


def test_gradient_matches_finite_differences() -> None:
    z1, z2 = torch.randn(2, 4, 6, dtype=torch.float64).unbind(0)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent_loss(a, b, 0.2), (z1, z2))


def test_self_similarity_is_masked_and_positive_column_is_the_other_view() -> None:
    z1, z2 = torch.randn(2, 3, 4)
    logits, targets = nt_xent_logits(z1, z2, 0.5)
    assert logits.shape == (6, 6)
    assert torch.isinf(logits.diagonal()).all()
    assert targets.tolist() == [3, 4, 5, 0, 1, 2]


def test_shards_with_gathered_negatives_average_to_the_single_device_loss() -> None:
    # What each of 2 devices computes with the gathered projections must average to the loss of
    # one device holding all images, and the positive must sit at the rank's offset.
    world_size, n, dim = 2, 3, 5
    z1, z2 = torch.randn(2, world_size * n, dim)
    single = nt_xent_loss(z1, z2, 0.3)
    shards = [slice(r * n, (r + 1) * n) for r in range(world_size)]
    per_rank = [
        nt_xent_loss(z1[shard], z2[shard], 0.3, gathered_z1=z1, gathered_z2=z2, rank=r)
        for r, shard in enumerate(shards)
    ]
    torch.testing.assert_close(torch.stack(per_rank).mean(), single)
    _, targets = nt_xent_logits(z1[n:], z2[n:], 0.3, gathered_z1=z1, gathered_z2=z2, rank=1)
    assert targets.tolist() == [9, 10, 11, 3, 4, 5]


@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_rejects_non_positive_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nt_xent_loss(torch.randn(2, 3), torch.randn(2, 3), temperature)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        nt_xent_loss(torch.randn(2, 3), torch.randn(3, 3), 0.1)
