"""The checks every SimCLR datamodule makes of its view and loader arguments, before anything is read.

Apart from the datamodule so that each message is written once for every dataset, and names the
`--data.` argument to change.
"""

from __future__ import annotations


def check_view_arguments(
    batch_size: int,
    num_workers: int,
    image_size: int | None,
    native_image_size: int | None,
    min_crop_scale: float,
    jitter_strength: float,
    solarize_p: float,
    max_decoded_side: int,
    datamodule_name: str,
) -> None:
    if batch_size < 2:
        raise ValueError(
            f"batch_size={batch_size} is too small: SimCLR needs at least 2 images per batch so that "
            "every image has negatives. Use batch_size >= 2 (the paper uses 256-4096)."
        )
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers} must be >= 0 (0 loads data in the main process).")
    if image_size is None and native_image_size is None:
        raise ValueError(f"{datamodule_name} needs an explicit image_size (its images vary in size).")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size={image_size} must be a positive number of pixels.")
    if not 0.0 < min_crop_scale <= 1.0:
        raise ValueError(f"min_crop_scale={min_crop_scale} must be in (0, 1] (a fraction of the area).")
    if jitter_strength < 0.0:
        raise ValueError(f"jitter_strength={jitter_strength} must be >= 0 (0 disables colour jitter).")
    if not 0.0 <= solarize_p <= 1.0:
        raise ValueError(f"solarize_p={solarize_p} must be a probability in [0, 1] (0 turns it off).")
    view_size = image_size or native_image_size or 1
    if max_decoded_side < view_size:
        raise ValueError(
            f"max_decoded_side={max_decoded_side} is smaller than the views ({view_size} px); "
            "use at least the view size (default 1024)."
        )


def check_enough_images(count: int, batch_size: int, root: str) -> None:
    if count < batch_size:
        raise ValueError(
            f"The training set in '{root}' has {count} images, fewer than batch_size={batch_size}; with "
            "drop_last=True no batch would be produced. Lower batch_size or add images."
        )
