from __future__ import annotations

import io

import pytest
from PIL import Image

from unde.errors import BadInput
from unde.vision.images import clamp_bbox, crop, decode_image, encode_jpeg

LIMIT = 40_000_000


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_jpeg_decodes_to_rgb() -> None:
    data = _encode(Image.new("RGB", (64, 48), (200, 10, 10)), "JPEG")
    image = decode_image(data, max_pixels=LIMIT)
    assert image.mode == "RGB" and image.size == (64, 48)


@pytest.mark.parametrize(
    ("mode", "fmt"), [("CMYK", "JPEG"), ("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("I;16", "PNG"),
                      ("L", "WEBP")],
)
def test_every_mode_is_normalised_to_rgb(mode: str, fmt: str) -> None:
    data = _encode(Image.new(mode, (32, 32)), fmt)
    assert decode_image(data, max_pixels=LIMIT).mode == "RGB"


def test_alpha_is_composited_on_white() -> None:
    data = _encode(Image.new("RGBA", (16, 16), (0, 0, 0, 0)), "PNG")
    assert decode_image(data, max_pixels=LIMIT).getpixel((8, 8)) == (255, 255, 255)


def test_exif_rotation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = _encode(Image.new("RGB", (40, 20)), "JPEG", exif=exif)
    assert decode_image(data, max_pixels=LIMIT).size == (20, 40)


def test_animated_gif_takes_the_first_frame() -> None:
    frames = [Image.new("P", (16, 16), color) for color in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buffer.getvalue(), max_pixels=LIMIT).size == (16, 16)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 422),
        (b"definitely not an image", 415),
        (_encode(Image.new("RGB", (64, 64)), "JPEG")[:200], 422),
        (_encode(Image.new("RGB", (64, 64)), "BMP"), 415),
        (_encode(Image.new("RGB", (4, 4)), "PNG"), 422),
    ],
)
def test_bad_bytes_are_rejected_with_4xx(data: bytes, status: int) -> None:
    with pytest.raises(BadInput) as caught:
        decode_image(data, max_pixels=LIMIT)
    assert caught.value.status_code == status


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 10000 x 10000 of one colour compresses to a few KB but is 100 megapixels.
    data = _encode(Image.new("L", (10_000, 10_000)), "PNG")
    assert len(data) < 200_000
    with pytest.raises(BadInput) as caught:
        decode_image(data, max_pixels=LIMIT)
    assert caught.value.status_code == 413


def test_bbox_is_clamped_and_validated() -> None:
    assert clamp_bbox([-5, -5, 50.4, 30.6], (40, 40)) == (0, 0, 40, 31)
    with pytest.raises(BadInput, match="no usable area"):
        clamp_bbox([10, 10, 12, 12], (40, 40))
    with pytest.raises(BadInput):
        clamp_bbox([1, 2, 3], (40, 40))


def test_crop_and_reencode() -> None:
    image = Image.new("RGB", (100, 80), (0, 0, 255))
    part = crop(image, [10, 10, 60, 50])
    assert part.size == (50, 40)
    assert decode_image(encode_jpeg(part), max_pixels=LIMIT).size == (50, 40)
