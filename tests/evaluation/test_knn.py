import math

import pytest
import torch

from evaluation.knn import knn_accuracy, knn_predict


def test_votes_are_temperature_weighted_similarities_of_the_k_nearest() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.2]])
    scores = knn_predict(bank, labels, query, num_classes=2, k=2, temperature=0.5)
    q = query / query.norm()
    similarity_to_0 = (q @ torch.tensor([1.0, 0.0])).item()
    similarity_to_2 = (q @ (torch.tensor([1.0, 1.0]) / math.sqrt(2))).item()
    # The two nearest are bank rows 0 and 2; row 1 is out of the top k.
    expected = torch.tensor([[math.exp(similarity_to_0 / 0.5), math.exp(similarity_to_2 / 0.5)]])
    torch.testing.assert_close(scores, expected)


def test_chunking_does_not_change_the_scores() -> None:
    generator = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(50, 8, generator=generator), torch.randn(13, 8, generator=generator)
    labels = torch.randint(0, 3, (50,), generator=generator)
    whole = knn_predict(bank, labels, queries, num_classes=3, k=7, chunk_size=1024)
    chunked = knn_predict(bank, labels, queries, num_classes=3, k=7, chunk_size=4)
    torch.testing.assert_close(whole, chunked)


def test_separable_clusters_are_classified_perfectly_and_k_is_capped() -> None:
    centres = torch.eye(4, 16) * 10
    labels = torch.arange(4).repeat_interleave(10)
    bank = centres[labels] + torch.randn(40, 16)
    queries = centres[torch.arange(4)] + torch.randn(4, 16)
    assert knn_accuracy(bank, labels, queries, torch.arange(4), num_classes=4, k=200) == 1.0


def test_mismatched_bank_is_rejected() -> None:
    with pytest.raises(ValueError, match="bank_labels"):
        knn_predict(torch.randn(3, 2), torch.zeros(2, dtype=torch.long), torch.randn(1, 2), num_classes=2)
