"""The per-image PIL views draw what torchvision's SimCLR pipeline draws and compute what it computes.

Distribution checks compare means (or shares) with a z-bound: |difference| < Z standard errors, with
seeded generators, so a mismatch of a few percent in any parameter fails without flaky outcomes.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F1
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as v1
from torchvision.transforms import v2

from tests.datamodules.fake_data import unnormalise
from views.config import BRIGHTNESS, CONTRAST, HUE, SATURATION, AugmentConfig
from views.per_image import CROP_UNIFORMS, PilProbeView, PilSimCLRView, ViewDraw, crop_resize, sample_crop
from views.per_image_dataset import SimCLRTrainingDataset

Z = 4.5
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def assert_same_mean(a: np.ndarray, b: np.ndarray, what: str) -> None:
    standard_error = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) <= Z * standard_error + 1e-12, f"{what}: {a.mean():.4f} vs {b.mean():.4f}"


def assert_share(flags: list[bool], p: float, what: str) -> None:
    share = float(np.mean(flags))
    assert abs(share - p) < Z * math.sqrt(p * (1 - p) / len(flags)) + 1e-12, f"{what}: {share:.4f} vs {p}"


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields plus noise: every colour operation changes them visibly."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    noise = rng.integers(-20, 21, size=(height, width, 3))
    return Image.fromarray(np.clip(np.asarray(coarse).astype(int) + noise, 0, 255).astype(np.uint8))


def settings(image_size: int = 32, **overrides: object) -> AugmentConfig:
    return replace(AugmentConfig.simclr(image_size, MEAN, STD), **overrides)


def no_op_settings(image_size: int) -> AugmentConfig:
    """Every step either off or with the identity parameters."""
    return settings(
        image_size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=1.0,
        jitter_strength=0.0, grayscale_p=0.0, blur=False, solarize_p=0.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("width", "height", "scale"),
    [(32, 32, (0.08, 1.0)), (64, 96, (0.2, 1.0)), (96, 24, (0.2, 1.0))],  # the last falls back often
)
def test_crops_have_the_area_ratio_and_position_statistics_of_random_resized_crop(
    width: int, height: int, scale: tuple[float, float]
) -> None:
    torch.manual_seed(0)
    reference = v1.RandomResizedCrop(32, scale=scale)
    image = Image.new("RGB", (width, height))
    theirs = np.array([reference.get_params(image, reference.scale, reference.ratio) for _ in range(4000)])
    rng = np.random.default_rng(1)
    boxes = np.array(
        [
            sample_crop(rng.random(CROP_UNIFORMS).tolist(), width, height, scale, reference.ratio)
            for _ in range(20000)
        ]
    )
    left, top, crop_w, crop_h = boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (
        (left >= 0).all()
        and (top >= 0).all()
        and (boxes[:, 2] <= width).all()
        and (boxes[:, 3] <= height).all()
    )
    ours = {"area": crop_w * crop_h, "log ratio": np.log(crop_w / crop_h), "top": top, "left": left}
    i, j, h, w = theirs.T.astype(np.float64)
    expected = {"area": h * w, "log ratio": np.log(w / h), "top": i, "left": j}
    for name, values in ours.items():
        assert_same_mean(values.astype(np.float64), expected[name], name)
        assert_same_mean(values.astype(np.float64) ** 2, expected[name] ** 2, f"{name} squared")


def test_central_fallback_is_torchvisions() -> None:
    # A 200 x 10 strip cannot hold any crop of area >= 90% with an allowed ratio: always the fallback.
    torch.manual_seed(0)
    image = Image.new("RGB", (200, 10))
    i, j, h, w = v1.RandomResizedCrop.get_params(image, [0.9, 1.0], [3 / 4, 4 / 3])
    box = sample_crop([0.5] * CROP_UNIFORMS, 200, 10, (0.9, 1.0), (3 / 4, 4 / 3))
    assert box == (j, i, j + w, i + h)


def test_probabilities_factors_and_order_match_torchvisions_colour_jitter() -> None:
    config = settings(96, jitter_strength=0.5, blur=True, solarize_p=0.3)
    reference = v1.ColorJitter(0.4, 0.4, 0.4, 0.1)  # ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s) at s = 0.5
    view, rng = PilSimCLRView(config), np.random.default_rng(2)
    draws = [view.draw(rng, 96, 96) for _ in range(20000)]

    assert_share([d.flip for d in draws], 0.5, "flipped")
    assert_share([bool(d.jitter) for d in draws], 0.8, "jittered")
    assert_share([d.grayscale for d in draws], 0.2, "grayscale")
    assert_share([d.blur_sigma is not None for d in draws], 0.5, "blurred")
    assert_share([d.solarize for d in draws], 0.3, "solarized")

    jittered = [dict(d.jitter) for d in draws if d.jitter]
    torch.manual_seed(3)
    ranges = (reference.brightness, reference.contrast, reference.saturation, reference.hue)
    theirs = [reference.get_params(*ranges) for _ in range(4000)]
    for op, name in [
        (BRIGHTNESS, "brightness"),
        (CONTRAST, "contrast"),
        (SATURATION, "saturation"),
        (HUE, "hue"),
    ]:
        low, high = getattr(reference, name)
        ours = np.array([j[op] for j in jittered])
        assert (
            low <= ours.min() and ours.max() <= high and ours.min() - low < 0.01 and high - ours.max() < 0.01
        )
        assert_same_mean(ours, np.array([t[1 + op] for t in theirs], dtype=np.float64), name)
    orders = np.array([[op for op, _ in d.jitter] for d in draws if d.jitter])
    for position in range(4):
        for op in range(4):
            assert_share(list(orders[:, position] == op), 0.25, f"operation {op} at position {position}")
    sigmas = np.array([d.blur_sigma for d in draws if d.blur_sigma is not None])
    assert 0.1 <= sigmas.min() < 0.11 and 1.99 < sigmas.max() <= 2.0
    assert_same_mean(sigmas, np.random.default_rng(4).uniform(0.1, 2.0, 4000), "blur sigma")


def test_blur_is_drawn_only_where_the_config_blurs() -> None:
    view, rng = PilSimCLRView(settings(32)), np.random.default_rng(0)  # 32 px: no blur by the paper's rule
    assert all(view.draw(rng, 32, 32).blur_sigma is None for _ in range(500))


@pytest.mark.parametrize(
    ("operation", "reference", "tolerance"),
    [
        (BRIGHTNESS, F1.adjust_brightness, 0),
        (CONTRAST, F1.adjust_contrast, 0),
        (SATURATION, F1.adjust_saturation, 0),
        (HUE, F1.adjust_hue, 0),
    ],
)
def test_each_jitter_operation_equals_torchvisions_pil_function(
    operation: int, reference, tolerance: int
) -> None:
    view = PilSimCLRView(no_op_settings(24))
    for seed, factor in enumerate([0.3, 0.75, 1.35, 1.8] if operation != HUE else [-0.5, -0.13, 0.04, 0.45]):
        image = photo(24, 24, seed)
        draw = ViewDraw(box=(0, 0, 24, 24), flip=False, jitter=((operation, factor),), grayscale=False,
                        blur_sigma=None, solarize=False)  # fmt: skip
        ours = view.render(image, draw).numpy().astype(int)
        theirs = np.asarray(reference(image, factor)).astype(int)
        assert np.abs(ours - theirs).max() <= tolerance, factor
        assert (ours != np.asarray(image)).mean() > 0.3  # the operation really changed the image


def test_a_view_is_torchvisions_crop_flip_jitter_in_order_grayscale_blur_and_solarize() -> None:
    config = settings(40, blur=True)
    image = photo(57, 45, seed=5)
    draw = ViewDraw(
        box=(3, 7, 3 + 38, 7 + 31), flip=True,
        jitter=((HUE, 0.2), (CONTRAST, 1.6), (BRIGHTNESS, 0.7), (SATURATION, 1.3)),
        grayscale=False, blur_sigma=1.3, solarize=True,
    )  # fmt: skip
    # The geometry of torchvision's v2 tensor functions (torch's antialiased uint8 resize), then its PIL
    # colour functions, which the compiled kernels reproduce exactly; only the blur may round differently.
    cropped = v2.functional.resized_crop(F1.pil_to_tensor(image), 7, 3, 31, 38, [40, 40], antialias=True)
    expected = F1.hflip(F1.to_pil_image(cropped))
    expected = F1.adjust_brightness(F1.adjust_contrast(F1.adjust_hue(expected, 0.2), 1.6), 0.7)
    expected = F1.adjust_saturation(expected, 1.3)
    unblurred = PilSimCLRView(config).render(image, replace(draw, blur_sigma=None, solarize=False))
    np.testing.assert_array_equal(unblurred.numpy(), np.asarray(expected))
    expected = F1.solarize(F1.gaussian_blur(expected, [5, 5], [1.3, 1.3]), 128)
    ours = PilSimCLRView(config).render(image, draw).numpy().astype(int)
    assert np.abs(ours - np.asarray(expected).astype(int)).max() <= 1

    grey = PilSimCLRView(config).render(
        image, replace(draw, jitter=(), grayscale=True, blur_sigma=None, solarize=False)
    )
    expected_grey = F1.rgb_to_grayscale(F1.hflip(F1.resized_crop(image, 7, 3, 31, 38, [40, 40])), 3)
    np.testing.assert_array_equal(grey.numpy(), np.asarray(expected_grey))


def test_the_crop_is_torchvisions_v2_resized_crop_and_within_one_level_of_pils() -> None:
    image = photo(300, 220, seed=6)
    for box, size in [((10, 20, 250, 200), 96), ((100, 40, 140, 90), 96), ((0, 0, 300, 220), 64)]:
        left, top, right, bottom = box
        pixels = F1.pil_to_tensor(image)
        ours = crop_resize(pixels, box, size).astype(int)
        on_tensor = v2.functional.resized_crop(pixels, top, left, bottom - top, right - left, [size, size])
        np.testing.assert_array_equal(ours, on_tensor.permute(1, 2, 0).numpy())
        on_pil = np.asarray(F1.resized_crop(image, top, left, bottom - top, right - left, [size, size]))
        assert np.abs(ours - on_pil.astype(int)).max() <= 1


@pytest.mark.parametrize("jitter_p", [0.0, 1.0])
def test_a_no_op_configuration_reproduces_the_image(jitter_p: float) -> None:
    image = photo(32, 32, seed=1)
    dataset = SimCLRTrainingDataset(
        [(image, 7)] * 3, PilSimCLRView(replace(no_op_settings(32), jitter_p=jitter_p)), PilProbeView(32)
    )
    batch = dataset.collate([dataset[i] for i in range(3)])
    for key in ("view1", "view2"):
        np.testing.assert_array_equal(
            unnormalise(batch[key], MEAN, STD), np.broadcast_to(np.asarray(image), (3, 32, 32, 3))
        )


def test_collate_normalises_as_torchvision_and_keeps_the_batch_contract() -> None:
    images = [(photo(40 + 7 * i, 36 + 3 * i, seed=i), label) for i, label in enumerate([3, -1, 5, 0])]
    dataset = SimCLRTrainingDataset(images, PilSimCLRView(settings(32)), PilProbeView(32))
    samples = [dataset[i] for i in range(4)]
    batch = dataset.collate(samples)
    assert set(batch) == {"view1", "view2", "probe_view", "label"}
    normalise = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(MEAN), list(STD))])
    for key in ("view1", "view2", "probe_view"):
        assert type(batch[key]) is torch.Tensor and batch[key].dtype == torch.float32
        assert batch[key].shape == (4, 3, 32, 32) and batch[key].is_contiguous()
        expected = normalise(torch.stack([s[key] for s in samples]).permute(0, 3, 1, 2))
        torch.testing.assert_close(batch[key], expected, atol=1e-5, rtol=0)
    assert not torch.equal(batch["view1"], batch["view2"])
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [3, -1, 5, 0]


def test_small_probe_view_is_a_zero_padded_random_crop_with_flip() -> None:
    image = photo(32, 32, seed=2)
    pixels = np.pad(np.asarray(image), ((4, 4), (4, 4), (0, 0)))
    probe, rng = PilProbeView(32), np.random.default_rng(0)
    shifts, flips = set(), []
    for _ in range(1000):
        view = probe(image, rng).numpy()
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if np.array_equal(
                view,
                pixels[dy : dy + 32, dx : dx + 32][:, ::-1] if flip else pixels[dy : dy + 32, dx : dx + 32],
            )
        ]
        assert len(matches) == 1
        shifts.add(matches[0][:2])
        flips.append(matches[0][2])
    assert shifts == {(dy, dx) for dy in range(9) for dx in range(9)}  # every shift in [-4, 4]^2
    assert_share(flips, 0.5, "probe flipped")


def test_probe_view_fits_other_sizes_and_crops_large_images() -> None:
    rng = np.random.default_rng(0)
    assert PilProbeView(32)(photo(50, 40), rng).shape == (32, 32, 3)
    views = [PilProbeView(96)(photo(120, 100), rng) for _ in range(2)]
    assert views[0].shape == (96, 96, 3) and views[0].dtype == torch.uint8
    assert not torch.equal(views[0], views[1])


class SameImage(torch.utils.data.Dataset):
    """One image many times: any difference between items comes from the drawn parameters."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return photo(32, 32), 0


def views_of(dataset: SimCLRTrainingDataset, num_workers: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    loader = DataLoader(dataset, batch_size=4, num_workers=num_workers, collate_fn=dataset.collate)
    return torch.cat([batch["view1"] for batch in loader])


def test_ranks_and_workers_draw_independently_and_reproducibly_from_the_seed() -> None:
    def dataset(rank: int) -> SimCLRTrainingDataset:
        return SimCLRTrainingDataset(SameImage(), PilSimCLRView(settings(32)), PilProbeView(32), rank)

    first = dataset(0)
    first[0]  # a generator made in this process must not be inherited by the workers
    in_workers = views_of(first, num_workers=2, seed=0)
    # Worker 0 makes batch 0 (items 0-3), worker 1 batch 1 (items 4-7): the same positions must differ.
    assert not torch.isclose(in_workers[:4], in_workers[4:]).all(dim=(1, 2, 3)).any()
    torch.testing.assert_close(views_of(dataset(0), num_workers=2, seed=0), in_workers, rtol=0, atol=0)
    assert not torch.equal(views_of(dataset(0), num_workers=2, seed=1), in_workers)
    # In the main process every rank starts from the same torch seed; the rank separates them.
    rank0, rank1 = views_of(dataset(0), 0, seed=0), views_of(dataset(1), 0, seed=0)
    assert not torch.isclose(rank0, rank1).all(dim=(1, 2, 3)).any()
    torch.testing.assert_close(views_of(dataset(1), 0, seed=0), rank1, rtol=0, atol=0)
