"""A resume that changes the schedule's length follows the new plan and says so in one line."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.optim import WarmupCosineLR, warmup_cosine

PEAK = 0.5


def scheduler_after(steps: int, total_steps: int, warmup_steps: int) -> WarmupCosineLR:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    scheduler = WarmupCosineLR(optimizer, total_steps, warmup_steps)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return scheduler


def resumed(saved: dict, total_steps: int, warmup_steps: int) -> WarmupCosineLR:
    """What Lightning does on resume: a fresh scheduler from the new settings, then the saved state."""
    scheduler = scheduler_after(0, total_steps, warmup_steps)
    scheduler.load_state_dict(saved)
    return scheduler


def test_a_longer_run_replans_the_cosine_and_says_how(lightning_logs) -> None:
    saved = scheduler_after(30, total_steps=100, warmup_steps=10).state_dict()
    scheduler = resumed(saved, total_steps=200, warmup_steps=10)
    messages = [record.getMessage() for record in lightning_logs.records]
    (line,) = [message for message in messages if "re-planned" in message]
    old, new = PEAK * warmup_cosine(30, 100, 10), PEAK * warmup_cosine(30, 200, 10)
    assert "Resuming at step 30" in line and "from 100 steps (10 warm-up) to 200 (10 warm-up)" in line
    assert f"from {old:.4g} to {new:.4g}" in line and "--trainer.max_epochs" in line
    scheduler.step()  # the resumed run follows the new plan, step by step
    assert scheduler.get_last_lr()[0] == pytest.approx(PEAK * warmup_cosine(31, 200, 10))
    # ... and records it, so a second resume with the same settings says nothing.
    assert scheduler.state_dict()["total_steps"] == 200


def test_a_resume_with_the_same_settings_is_silent_and_continues_the_schedule(lightning_logs) -> None:
    saved = scheduler_after(30, total_steps=100, warmup_steps=10).state_dict()
    scheduler = resumed(saved, total_steps=100, warmup_steps=10)
    assert not [record for record in lightning_logs.records if "re-planned" in record.getMessage()]
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(PEAK * warmup_cosine(31, 100, 10))


def test_a_change_during_warmup_is_reported_too(lightning_logs) -> None:
    """Both plans give the same rate in the warm-up; the difference is still announced."""
    saved = scheduler_after(5, total_steps=100, warmup_steps=10).state_dict()
    resumed(saved, total_steps=300, warmup_steps=10)
    assert [record for record in lightning_logs.records if "re-planned from 100 steps" in record.getMessage()]


def test_a_new_peak_is_applied_from_the_first_resumed_step_and_said(lightning_logs) -> None:
    """The optimiser's saved rate (the old peak's) is replaced at load, before the next step uses it."""
    saved = scheduler_after(30, total_steps=100, warmup_steps=10).state_dict()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2 * PEAK)
    scheduler = WarmupCosineLR(optimizer, 100, 10)
    optimizer.param_groups[0]["lr"] = PEAK * warmup_cosine(29, 100, 10)  # as Lightning restores it
    scheduler.load_state_dict(saved)
    new = 2 * PEAK * warmup_cosine(30, 100, 10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(new) == scheduler.get_last_lr()[0]
    (line,) = [r.getMessage() for r in lightning_logs.records if "re-planned" in r.getMessage()]
    assert f"to a peak of {2 * PEAK:.4g} instead of {PEAK:.4g}" in line and "--model.base_lr" in line
    assert f"from {PEAK * warmup_cosine(30, 100, 10):.4g} to {new:.4g}" in line
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(2 * PEAK * warmup_cosine(31, 100, 10))
