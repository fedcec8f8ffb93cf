import copy
import math

import pytest
import torch
import torchvision
from lightly.utils.lars import LARS as LightlyLARS
from torch import nn

from lightning_modules.optim import (
    LARS,
    build_optimizer,
    parameter_groups,
    scaled_learning_rate,
    warmup_cosine,
)
from tests.op_counts import count_aten_ops


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


def reference_lars_step(optimizer: LARS) -> None:
    """The per-parameter LARS this project shipped before the multi-tensor step, kept as the reference."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if not group["lars_exclude"]:
                    update = update.add(param, alpha=group["weight_decay"])
                    param_norm = torch.linalg.vector_norm(param)
                    update_norm = torch.linalg.vector_norm(update)
                    trust_ratio = torch.where(
                        (param_norm > 0) & (update_norm > 0),
                        group["trust_coefficient"] * param_norm / update_norm,
                        torch.ones_like(param_norm),
                    )
                    update = update.mul(trust_ratio)
                state = optimizer.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])


def lars_pair(seed: int) -> tuple[nn.Module, LARS, nn.Module, LARS]:
    """Two identical models with identical LARS optimisers (decayed and exempt groups)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    model.register_parameter("zero_weight", nn.Parameter(torch.zeros(3, 2)))  # trust ratio falls back to 1
    twin = copy.deepcopy(model)
    optimizers = [
        LARS(parameter_groups(m, weight_decay=1e-2), lr=0.3, momentum=0.9, weight_decay=1e-2)
        for m in (model, twin)
    ]
    return model, optimizers[0], twin, optimizers[1]


def test_multi_tensor_lars_equals_the_per_parameter_reference_over_several_steps() -> None:
    model, optimizer, reference_model, reference = lars_pair(seed=0)
    for step in range(5):
        gradients = torch.Generator().manual_seed(step)
        for param, reference_param in zip(model.parameters(), reference_model.parameters(), strict=True):
            grad = torch.randn(param.shape, generator=gradients)
            if step == 2 and param.ndim == 1:
                grad = None  # a parameter without a gradient this step is left alone
            param.grad = grad
            reference_param.grad = None if grad is None else grad.clone()
        with torch.no_grad():
            model.zero_weight.zero_()  # zero-norm at every step
            reference_model.zero_weight.zero_()
        optimizer.step()
        reference_lars_step(reference)
        for param, reference_param in zip(model.parameters(), reference_model.parameters(), strict=True):
            torch.testing.assert_close(param, reference_param, rtol=0, atol=1e-6)
    assert not torch.equal(model[0].weight, lars_pair(seed=0)[0][0].weight)  # the weights did move
    # Same checkpoint layout as before: one momentum buffer per parameter.
    for (state, reference_state) in zip(
        optimizer.state_dict()["state"].values(), reference.state_dict()["state"].values(), strict=True
    ):
        assert set(state) == {"momentum_buffer"}
        torch.testing.assert_close(
            state["momentum_buffer"], reference_state["momentum_buffer"], rtol=0, atol=1e-6
        )


def test_lars_resumes_from_a_checkpoint_of_the_per_parameter_optimiser() -> None:
    model, optimizer, reference_model, reference = lars_pair(seed=1)
    for param, reference_param in zip(model.parameters(), reference_model.parameters(), strict=True):
        param.grad = torch.ones_like(param)
        reference_param.grad = torch.ones_like(param)
    reference_lars_step(reference)  # the old optimiser's state, as an old checkpoint holds it
    model.load_state_dict(reference_model.state_dict())
    optimizer.load_state_dict(copy.deepcopy(reference.state_dict()))
    optimizer.step()
    reference_lars_step(reference)
    for param, reference_param in zip(model.parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(param, reference_param, rtol=0, atol=1e-6)


@pytest.mark.parametrize("trust_ratio", ["simclr", "bolts"])
def test_lars_step_on_resnet18_is_a_few_multi_tensor_ops_without_host_syncs(trust_ratio: str) -> None:
    model = torchvision.models.resnet18()
    optimizer = build_optimizer(
        "lars", model, lr=0.1, weight_decay=1e-6, momentum=0.9, lars_trust_ratio=trust_ratio
    )
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    optimizer.step()  # the first step creates the momentum buffers
    counts = count_aten_ops(optimizer.step)
    # 62 parameter tensors; the per-parameter loop launched 439 ops per step.
    assert counts.launching() <= 30, dict(counts)
    assert counts.host_syncs() == 0


def lars_and_lightly_lars(seed: int, trust_ratio: str) -> tuple[nn.Module, LARS, nn.Module, LightlyLARS]:
    """Two identical float64 models, one under our LARS, one under lightly's, both with a decayed group
    (weights, one of them all zeros) and an exempt group with weight decay 0 (biases, batch norm)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    model.register_parameter("zero_weight", nn.Parameter(torch.zeros(3, 2)))
    model = model.double()
    twin = copy.deepcopy(model)
    ours = LARS(
        parameter_groups(model, weight_decay=1e-2), lr=0.3, momentum=0.9, weight_decay=1e-2,
        trust_ratio=trust_ratio,
    )  # fmt: skip
    decayed, exempt = parameter_groups(twin, weight_decay=1e-2)
    theirs = LightlyLARS(
        [
            {"params": decayed["params"], "weight_decay": 1e-2},
            {"params": exempt["params"], "weight_decay": 0.0},
        ],
        lr=0.3, momentum=0.9, trust_coefficient=0.001,
    )  # fmt: skip
    return model, ours, twin, theirs


@pytest.mark.parametrize("trust_ratio", ["bolts", "simclr"])
def test_lars_equals_lightlys_lars_step_for_step_with_the_bolts_trust_ratio_only(trust_ratio: str) -> None:
    model, optimizer, lightly_model, lightly_optimizer = lars_and_lightly_lars(0, trust_ratio)
    start = copy.deepcopy(model)
    matches = True
    for step in range(6):
        gradients = torch.Generator().manual_seed(step)
        for param, lightly_param in zip(model.parameters(), lightly_model.parameters(), strict=True):
            grad = torch.randn(param.shape, generator=gradients, dtype=torch.float64)
            if step == 3 and param.ndim == 2:
                grad = torch.zeros_like(grad)  # a zero gradient: the peers step by it, without decay
            param.grad, lightly_param.grad = grad, grad.clone()
        optimizer.step()
        lightly_optimizer.step()
        for param, lightly_param in zip(model.parameters(), lightly_model.parameters(), strict=True):
            matches &= torch.allclose(param, lightly_param, rtol=1e-12, atol=0)
    if trust_ratio == "bolts":
        assert matches
        for param, initial in zip(model.parameters(), start.parameters(), strict=True):
            if param.abs().sum() > 0:  # all but the zero weight, which only plain SGD moves
                assert not torch.equal(param, initial)
    else:  # the paper's denominator ||g + wd w|| moves the decayed weights differently
        assert not matches
        torch.testing.assert_close(model[1].weight, lightly_model[1].weight, rtol=1e-12, atol=0)
    # The choice is not saved in the param groups: checkpoints keep their format.
    assert set(optimizer.state_dict()["param_groups"][0]) == {
        "lr", "momentum", "weight_decay", "trust_coefficient", "lars_exclude", "params"
    }  # fmt: skip


def test_the_two_trust_ratios_differ_by_the_denominator() -> None:
    weight = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # norm 5
    grad = torch.tensor([[0.6, -0.8]], dtype=torch.float64)  # norm 1
    moved = {}
    for trust_ratio in ("simclr", "bolts"):
        param = nn.Parameter(weight.clone())
        param.grad = grad.clone()
        LARS([param], lr=1.0, momentum=0.9, weight_decay=0.1, trust_ratio=trust_ratio).step()
        moved[trust_ratio] = weight - param.detach()
    update = grad + 0.1 * weight  # [[0.9, -0.4]]
    torch.testing.assert_close(moved["simclr"], 0.001 * 5.0 / update.norm() * update)
    torch.testing.assert_close(moved["bolts"], 0.001 * 5.0 / (1.0 + 0.1 * 5.0 + 1e-8) * update)


def test_lars_rejects_an_unknown_trust_ratio() -> None:
    with pytest.raises(ValueError, match="trust_ratio must be 'simclr' or 'bolts'"):
        LARS(nn.Linear(2, 2).parameters(), lr=0.1, trust_ratio="lightly")  # type: ignore[arg-type]
