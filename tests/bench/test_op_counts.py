"""count_aten_ops counts the ops that launch kernels and nothing else."""

from __future__ import annotations

import torch

from bench.op_counts import count_aten_ops, count_profiled_ops


def test_views_and_bare_allocations_are_not_counted_compute_and_copies_are() -> None:
    images = torch.rand(4, 3, 8, 8)

    def work() -> None:
        flat = images.permute(0, 2, 3, 1).reshape(4, -1)  # a copy: permuted memory is not contiguous
        scaled = flat[:, :10].unsqueeze(0).expand(2, 4, 10) * 2.0
        torch.empty(5).fill_(1.0)
        scaled.add_(1.0).sum().item()

    counts = count_aten_ops(work)
    assert counts == {
        "clone.default": 1,
        "mul.Tensor": 1,
        "fill_.Scalar": 1,
        "add_.Tensor": 1,
        "sum.default": 1,
        "_local_scalar_dense.default": 1,
    }


def test_min_elements_keeps_only_the_ops_with_a_large_enough_output() -> None:
    images = torch.rand(4, 3, 8, 8)
    factors = torch.rand(4)

    def work() -> None:
        scaled = factors * 2.0  # 4 elements
        (images * scaled.view(4, 1, 1, 1)).mean(dim=1)  # 768 elements, then 256

    assert count_aten_ops(work, min_elements=256) == {"mul.Tensor": 1, "mean.dim": 1}
    assert count_aten_ops(work, min_elements=257) == {"mul.Tensor": 1}
    assert count_aten_ops(work) == {"mul.Tensor": 2, "mean.dim": 1}


def test_profiled_count_agrees_with_the_dispatch_count_on_eager_code() -> None:
    images = torch.rand(4, 3, 8, 8)

    def work() -> None:
        doubled = images.permute(0, 2, 3, 1) * 2.0  # permute: a view
        doubled.unsqueeze_(0).add_(1.0)  # unsqueeze_: metadata only
        doubled.to(torch.float64).sum()  # `to` runs as one copy into a fresh tensor

    outside, inside, regions = count_profiled_ops(work)
    # The profiler names the deepest launching op of each call (mul's scalar becomes a copy_), so only
    # the totals are comparable: one launch each for mul, add_, the copy of `to` and sum.
    assert sum(outside.values()) == sum(count_aten_ops(work).values()) == 4
    assert inside == {} and regions == 0
