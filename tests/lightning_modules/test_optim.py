import math

import pytest
import torch
from torch import nn

from lightning_modules.optim import (
    LARS,
    build_optimizer,
    parameter_groups,
    scaled_learning_rate,
    warmup_cosine,
)


def test_learning_rate_scales_linearly_with_batch() -> None:
    assert scaled_learning_rate(0.3, 4096) == pytest.approx(4.8)
    assert scaled_learning_rate(0.3, 256) == pytest.approx(0.3)


def test_warmup_then_cosine_values() -> None:
    total, warmup = 110, 10
    assert warmup_cosine(0, total, warmup) == pytest.approx(0.1)
    assert warmup_cosine(9, total, warmup) == pytest.approx(1.0)
    assert warmup_cosine(10, total, warmup) == pytest.approx(1.0)
    assert warmup_cosine(60, total, warmup) == pytest.approx(0.5)
    assert warmup_cosine(35, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert warmup_cosine(110, total, warmup) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(500, total, warmup) == pytest.approx(0.0, abs=1e-12)


def test_schedule_without_warmup_starts_at_peak() -> None:
    assert warmup_cosine(0, 100, 0) == pytest.approx(1.0)


def test_biases_and_norm_parameters_are_exempt() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    decayed, exempt = parameter_groups(model, weight_decay=0.1)
    assert {id(p) for p in decayed["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in exempt["params"]} == {
        id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[2].bias)
    }
    assert exempt["weight_decay"] == 0.0 and exempt["lars_exclude"]


def test_lars_step_matches_hand_computation() -> None:
    weight = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    bias = nn.Parameter(torch.tensor([1.0]))
    weight.grad = torch.tensor([[0.6, 0.8]])
    bias.grad = torch.tensor([0.5])
    optimizer = LARS(
        [
            {"params": [weight], "lars_exclude": False},
            {"params": [bias], "weight_decay": 0.0, "lars_exclude": True},
        ],
        lr=0.1, momentum=0.9, weight_decay=0.01, trust_coefficient=0.001,
    )
    optimizer.step()
    update = torch.tensor([[0.6, 0.8]]) + 0.01 * torch.tensor([[3.0, 4.0]])
    trust = 0.001 * 5.0 / update.norm()
    torch.testing.assert_close(weight.data, torch.tensor([[3.0, 4.0]]) - 0.1 * trust * update)
    # Excluded: plain momentum SGD without decay or trust ratio.
    torch.testing.assert_close(bias.data, torch.tensor([1.0 - 0.1 * 0.5]))
    # Second step: momentum accumulates.
    weight.grad = torch.zeros_like(weight)
    bias.grad = torch.zeros_like(bias)
    optimizer.step()
    torch.testing.assert_close(bias.data, torch.tensor([1.0 - 0.1 * 0.5 - 0.1 * 0.9 * 0.5]))


def test_lars_leaves_zero_norm_weights_to_plain_sgd() -> None:
    weight = nn.Parameter(torch.zeros(2))
    weight.grad = torch.ones(2)
    LARS([weight], lr=0.5, weight_decay=0.0).step()
    torch.testing.assert_close(weight.data, torch.full((2,), -0.5))


@pytest.mark.parametrize("name,cls", [("lars", LARS), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_build_optimizer_keeps_exemptions(name: str, cls: type) -> None:
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(name, model, lr=0.1, weight_decay=0.5, momentum=0.9)
    assert isinstance(optimizer, cls)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.5, 0.0]


def test_build_optimizer_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="--model.optimizer"):
        build_optimizer("adam", nn.Linear(2, 2), lr=0.1, weight_decay=0.0, momentum=0.9)
