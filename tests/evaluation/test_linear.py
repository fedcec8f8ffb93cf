import torch

from evaluation.linear import _fold_standardisation, topk_accuracy, train_linear_classifier


def test_separable_features_of_any_scale_are_learned_perfectly() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator) * 3
    labels = torch.arange(4).repeat_interleave(25)
    features = (centres[labels] + 0.3 * torch.randn(100, 8, generator=generator)) * 1000.0
    layer = train_linear_classifier(features, labels, num_classes=4, epochs=10, batch_size=32, lr=3e-2)
    assert topk_accuracy(layer(features), labels, 1) == 1.0


def test_folded_layer_equals_the_standardised_one() -> None:
    layer = torch.nn.Linear(5, 3)
    mean, std = torch.randn(5), torch.rand(5) + 0.5
    x = torch.randn(7, 5)
    torch.testing.assert_close(_fold_standardisation(layer, mean, std)(x), layer((x - mean) / std))


def test_topk_counts_a_hit_anywhere_in_the_top_k_and_caps_k() -> None:
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    labels = torch.tensor([2, 0])
    assert topk_accuracy(logits, labels, 1) == 0.5
    assert topk_accuracy(logits, labels, 2) == 1.0
    assert topk_accuracy(logits, labels, 5) == 1.0
