"""RankMe, alignment and uniformity against their definitions, computed the slow way."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.health import alignment, gram_singular_values, rankme, uniformity


def reference_rankme(embeddings: torch.Tensor) -> float:
    """Garrido et al.'s eq. 1 on the embedding matrix itself, with a Python loop over its singular values."""
    singular_values = torch.linalg.svdvals(embeddings.double()).tolist()
    total = sum(singular_values)
    probabilities = [value / total + 1e-7 for value in singular_values]
    return math.exp(-sum(p * math.log(p) for p in probabilities))


@pytest.mark.parametrize("rows,width", [(200, 16), (16, 64), (64, 64)])
def test_rankme_of_the_gram_matrix_is_rankme_of_the_embeddings(rows: int, width: int) -> None:
    generator = torch.Generator().manual_seed(rows)
    # A decaying spectrum, like real features: a few strong directions and many weak ones.
    embeddings = torch.randn(rows, width, generator=generator) * torch.logspace(0, -3, width)
    batches = embeddings.split(7)  # the Gram matrix adds up over batches
    gram = sum(batch.double().T @ batch.double() for batch in batches)
    singular_values = gram_singular_values(gram, rows)
    assert singular_values.shape == (min(rows, width),)
    torch.testing.assert_close(
        singular_values, torch.linalg.svdvals(embeddings.double()), rtol=1e-6, atol=1e-9
    )
    assert rankme(singular_values).item() == pytest.approx(reference_rankme(embeddings), rel=1e-6)


def test_rankme_counts_equally_used_directions() -> None:
    # k orthogonal directions used equally: rank k; all rows identical: rank 1 (complete collapse).
    assert rankme(torch.ones(5, dtype=torch.float64)).item() == pytest.approx(5, rel=1e-5)
    identical = torch.randn(1, 32).expand(100, 32)
    assert rankme(torch.linalg.svdvals(identical.double())).item() == pytest.approx(1, rel=1e-4)


def test_alignment_is_the_mean_squared_distance_of_positive_pairs_on_the_sphere() -> None:
    z1, z2 = torch.randn(2, 10, 8, generator=torch.Generator().manual_seed(0))
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    expected = sum(float((a[i] - b[i]).norm() ** 2) for i in range(10)) / 10
    assert alignment(z1, z2).item() == pytest.approx(expected, rel=1e-5)
    assert alignment(z1, 3 * z1).item() == pytest.approx(0, abs=1e-6)  # same direction
    assert alignment(z1, -z1).item() == pytest.approx(4, rel=1e-6)  # antipodal


def test_uniformity_is_the_log_mean_gaussian_potential_over_distinct_pairs() -> None:
    z = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    u = F.normalize(z.double(), dim=1)
    pairs = [(i, j) for i in range(12) for j in range(i + 1, 12)]
    expected = math.log(sum(math.exp(-2 * float((u[i] - u[j]).norm() ** 2)) for i, j in pairs) / len(pairs))
    assert uniformity(z).item() == pytest.approx(expected, rel=1e-5)
    assert uniformity(torch.ones(4, 6)).item() == pytest.approx(0, abs=1e-6)  # all coincide: the maximum
    # Two antipodal points: the pair is 2 apart, so log exp(-2 * 4) = -8.
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item() == pytest.approx(-8, rel=1e-6)
    assert math.isnan(uniformity(torch.randn(1, 6)).item())


def test_the_rank_of_non_finite_representations_is_nan_not_an_eigensolver_error() -> None:
    """A diverged run's validation features hold inf/NaN; eigvalsh raised LinAlgError on their Gram."""
    h = torch.randn(16, 8, dtype=torch.float64)
    h[3, 2] = float("inf")
    values = gram_singular_values(h.T @ h, 16)
    assert values.shape == (8,) and torch.isnan(values).all() and math.isnan(rankme(values).item())


def test_bf16_inputs_under_autocast_are_measured_in_float32() -> None:
    z1, z2 = torch.randn(2, 8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert alignment(z1.bfloat16(), z2.bfloat16()).dtype == torch.float32
        assert uniformity(z1.bfloat16()).dtype == torch.float32
