"""How a global contrastive batch is split: over devices, then into micro-batches of forward passes."""

from __future__ import annotations


def check_batch_split(
    global_batch: int, world_size: int, micro_batch_size: int | None, accumulate_grad_batches: int
) -> None:
    """Refuses gradient accumulation, which would change the method, and micro-batches of unequal size.

    Equal micro-batches keep batch-norm's statement simple (K micro-batches normalise like K devices)
    and give a compiled model one shape.
    """
    if accumulate_grad_batches > 1:
        accumulated = global_batch * accumulate_grad_batches
        raise ValueError(
            f"--trainer.accumulate_grad_batches {accumulate_grad_batches} would contrast each image with "
            f"the {global_batch} of its own batch only, not with the {accumulated} images of a step, which "
            f"is another method; for a contrastive batch of {accumulated} that fits in memory use "
            f"--data.batch_size {accumulated} --model.micro_batch_size {global_batch // world_size} "
            "(gradient caching) and leave accumulate_grad_batches at 1."
        )
    per_device = global_batch // world_size
    if micro_batch_size is None or micro_batch_size >= per_device or per_device % micro_batch_size == 0:
        return
    smaller = max(d for d in range(1, micro_batch_size) if per_device % d == 0)
    larger = min(d for d in range(micro_batch_size + 1, per_device + 1) if per_device % d == 0)
    raise ValueError(
        f"--model.micro_batch_size {micro_batch_size} does not divide the {per_device} images per device "
        f"(--data.batch_size {global_batch} over {world_size} device(s)); use a divisor of {per_device}, "
        f"e.g. {smaller} or {larger}."
    )


def micro_batches_per_device(per_device_batch: int, micro_batch_size: int | None) -> int:
    """Forward passes per step on each device (1: the whole per-device batch at once)."""
    if micro_batch_size is None or micro_batch_size >= per_device_batch:
        return 1
    return per_device_batch // micro_batch_size
