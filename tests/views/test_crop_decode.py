"""Training files decode to the loader's pixels, upright, and at a reduced scale only where crops allow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from views.config import AugmentConfig
from views.crop_decode import EXIF_ORIENTATION, ImageFile, scale_boxes
from views.decode import UnreadableImageError, load_rgb
from views.per_image import PilSimCLRView, crop_resize
from views.per_image_dataset import SimCLRTrainingDataset

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields with noise, so decoding and resampling differences show."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(5, 5, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC)).astype(int)
    noise = rng.integers(-12, 13, size=(height, width, 3))
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def saved(image: Image.Image, path: Path, **options: object) -> str:
    image.save(path, **options)
    return str(path)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_jpeg_decodes_to_the_loaders_pixels(tmp_path: Path, mode: str) -> None:
    path = saved(photo(57, 43).convert(mode), tmp_path / "a.jpg", quality=85)
    source = ImageFile.open(path)
    assert source.size == (57, 43) and source.header is not None
    decoded = source.decode()
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 43, 57)
    np.testing.assert_array_equal(decoded.permute(1, 2, 0).numpy(), np.asarray(load_rgb(path)))


def test_exif_orientation_is_applied_at_full_and_reduced_scale(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored sideways: shown rotated 90 degrees clockwise
    path = saved(photo(160, 96), tmp_path / "sideways.jpg", quality=90, exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    source = ImageFile.open(path)
    assert source.size == (96, 160)  # the views are drawn on the upright image
    np.testing.assert_array_equal(source.decode().permute(1, 2, 0).numpy(), upright)
    halved = ImageFile.open(path).decode(2).permute(1, 2, 0).numpy().astype(int)
    assert halved.shape == (80, 48, 3)
    reference = np.asarray(Image.fromarray(upright).resize((48, 80), Image.Resampling.BOX)).astype(int)
    assert np.abs(halved - reference).mean() < 3  # upright, not rotated the other way (which is far off)


def test_the_reduction_is_the_largest_both_crops_allow(tmp_path: Path) -> None:
    source = ImageFile.open(saved(photo(1600, 1068), tmp_path / "big.jpg", quality=90))
    wide, narrow = (0, 0, 1000, 1000), (100, 50, 600, 700)
    assert source.reduction_for([wide], 224) == 4
    assert source.reduction_for([wide, narrow], 224) == 2  # the smaller crop decides
    assert source.reduction_for([wide, (0, 0, 447, 900)], 224) == 1
    assert source.reduction_for([wide], 96) == 8
    png = ImageFile.open(saved(photo(1600, 1068), tmp_path / "big.png"))
    assert png.header is None and png.reduction_for([wide], 96) == 1  # only JPEGs decode at a scale


@pytest.mark.parametrize("reduction", [2, 4])
def test_views_from_a_reduced_decode_stay_close_to_the_full_decode(tmp_path: Path, reduction: int) -> None:
    path = saved(photo(1600, 1068, seed=3), tmp_path / "big.jpg", quality=90)
    boxes = [(100, 50, 1100, 1000), (520, 0, 1600, 1068)]
    full = ImageFile.open(path).decode()
    source = ImageFile.open(path)
    reduced = source.decode(reduction)
    assert reduced.shape == (3, -(-1068 // reduction), 1600 // reduction)
    for box, scaled in zip(boxes, scale_boxes(boxes, source.size, reduced), strict=True):
        difference = np.abs(crop_resize(full, box, 224).astype(int) - crop_resize(reduced, scaled, 224))
        # DCT-domain downscaling in place of part of the antialiased resize: README states these bounds.
        assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 8


def test_other_formats_and_broken_files_go_through_the_loader(tmp_path: Path) -> None:
    rgba = photo(30, 20).convert("RGBA")
    path = saved(rgba, tmp_path / "a.png")
    np.testing.assert_array_equal(ImageFile.open(path).decode().permute(1, 2, 0).numpy(), load_rgb(path))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(UnreadableImageError, match="garbage.jpg"):
        ImageFile.open(str(garbage))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(saved(photo(200, 150), tmp_path / "whole.jpg")).read_bytes()[:600])
    with pytest.raises(UnreadableImageError, match="truncated.jpg"):
        ImageFile.open(str(truncated)).decode()


def test_reading_the_file_gives_the_views_the_loader_path_gives(tmp_path: Path) -> None:
    images = [photo(90 + 13 * i, 70 + 7 * i, seed=i) for i in range(4)]
    paths = [saved(image, tmp_path / f"{i}.jpg", quality=90) for i, image in enumerate(images)]
    labels = [3, 1, 0, 2]
    config = AugmentConfig.simclr(32, MEAN, STD, jitter_strength=1.0, blur=True)
    loaded = [(load_rgb(path), label) for path, label in zip(paths, labels, strict=True)]
    by_loader = SimCLRTrainingDataset(loaded, PilSimCLRView(config))
    by_file = SimCLRTrainingDataset(loaded, PilSimCLRView(config), files=paths, labels=labels)
    torch.manual_seed(5)
    expected = by_loader.collate([by_loader[i] for i in range(4)])
    torch.manual_seed(5)
    batch = by_file.collate([by_file[i] for i in range(4)])
    for key in ("view1", "view2", "label"):
        torch.testing.assert_close(batch[key], expected[key], atol=0, rtol=0)
    with pytest.raises(ValueError, match="files and labels go together"):
        SimCLRTrainingDataset(loaded, PilSimCLRView(config), files=paths)
