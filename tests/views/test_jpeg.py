"""Workers read JPEG bytes and headers only; decoding, EXIF orientation and the size limit are exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from tests.views.photos import photo_pixels, save_jpeg
from views import jpeg
from views.decode import UnreadableImageError, load_rgb
from views.jpeg import decode_images, read_image

CPU = torch.device("cpu")
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_torchvision_and_pillow_apply_it(
    tmp_path: Path, orientation: int
) -> None:
    path = save_jpeg(tmp_path / "phone.jpg", photo_pixels(40, 24), orientation)
    read = read_image(str(path), max_side=1024)
    assert read.data.ndim == 1 and read.orientation == orientation  # bytes: decoded where views are made
    assert read.data.numpy().tobytes() == path.read_bytes()
    (decoded,) = decode_images([read.data], [read.orientation], [str(path)], CPU)
    # torchvision applies EXIF orientation on the CPU only; ours runs on every device and agrees.
    expected = decode_jpeg(read.data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    assert torch.equal(decoded, expected)
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
    assert (read.width, read.height) == upright.size == (decoded.shape[2], decoded.shape[1])
    assert (decoded.float() - TF.pil_to_tensor(upright).float()).abs().mean() < 1.0  # Pillow's decoder


def test_other_formats_and_cmyk_jpegs_are_decoded_in_the_worker(tmp_path: Path) -> None:
    pixels = photo_pixels(30, 20)
    png = tmp_path / "a.png"
    Image.fromarray(pixels).save(png)
    cmyk = save_jpeg(tmp_path / "cmyk.jpg", pixels, mode="CMYK")
    for path in (png, cmyk):
        read = read_image(str(path), max_side=1024)
        assert read.data.shape == (3, 20, 30) and (read.height, read.width, read.orientation) == (20, 30, 1)
        assert torch.equal(read.data, TF.pil_to_tensor(load_rgb(str(path))))
        (decoded,) = decode_images([read.data], [1], [str(path)], CPU)
        assert torch.equal(decoded, read.data)


@pytest.mark.parametrize("orientation", [1, 6])
def test_images_over_the_size_limit_are_decoded_at_reduced_size(tmp_path: Path, orientation: int) -> None:
    pixels = photo_pixels(1000, 600)
    path = save_jpeg(tmp_path / "large.jpg", pixels, orientation)
    read = read_image(str(path), max_side=300)
    full = (1000, 600) if orientation == 6 else (600, 1000)  # (height, width) as displayed
    assert (read.height, read.width) == full  # boxes are drawn from the full size
    # Decoded at 1/2 scale from the DCT (500 x 300: 1/4 would be smaller than the limit), then resized
    # (antialiased) to 300 px.
    assert read.data.shape == ((3, 300, 180) if orientation == 6 else (3, 180, 300))
    with Image.open(path) as image:
        reference = ImageOps.exif_transpose(image).resize((read.data.shape[2], read.data.shape[1]))
    assert (read.data.float() - TF.pil_to_tensor(reference).float()).abs().mean() < 3.0

    png = tmp_path / "large.png"
    Image.fromarray(pixels).save(png)
    read = read_image(str(png), max_side=300)
    assert read.data.shape == (3, 180, 300) and (read.height, read.width) == (600, 1000)


def test_a_jpeg_that_does_not_decode_is_named_in_one_line(tmp_path: Path) -> None:
    good = save_jpeg(tmp_path / "good.jpg", photo_pixels(30, 20))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: data.index(b"\xff\xda") + 20])  # the header parses, the pixels do not
    reads = [read_image(str(path), max_side=1024) for path in (good, truncated)]
    assert all(read.data.ndim == 1 for read in reads)
    with pytest.raises(UnreadableImageError, match="truncated.jpg") as raised:
        decode_images([read.data for read in reads], [1, 1], [str(good), str(truncated)], CPU)
    assert "\n" not in str(raised.value)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff" + bytes(64))
    with pytest.raises(UnreadableImageError, match="garbage.jpg"):
        read_image(str(garbage), max_side=1024)


def test_decoded_images_are_uint8_rgb_of_their_own_size(tmp_path: Path) -> None:
    grey = save_jpeg(tmp_path / "grey.jpg", photo_pixels(17, 9), mode="L")
    colour = save_jpeg(tmp_path / "colour.jpg", photo_pixels(12, 31))
    reads = [read_image(str(path), max_side=1024) for path in (grey, colour)]
    decoded = decode_images([r.data for r in reads], [1, 1], ["grey", "colour"], CPU)
    assert [tuple(image.shape) for image in decoded] == [(3, 9, 17), (3, 31, 12)]
    assert all(image.dtype == torch.uint8 for image in decoded)
    assert torch.equal(decoded[0][0], decoded[0][1])  # grey stays grey in RGB
    np.testing.assert_array_equal(decoded[0][0].numpy(), np.asarray(Image.open(grey)))


def test_a_decompression_bomb_is_left_to_the_project_loader_to_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow's error from the header read names no file; the loader's report (views/decode.py) does."""
    path = save_jpeg(tmp_path / "bomb.jpg", photo_pixels(40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1,200 pixels: over twice the limit

    def loader(file: str) -> Image.Image:
        raise UnreadableImageError(f"Image file '{file}' is a decompression bomb")

    monkeypatch.setattr(jpeg, "load_rgb", loader)
    with pytest.raises(UnreadableImageError, match="bomb.jpg"):
        read_image(str(path), max_side=1024)
