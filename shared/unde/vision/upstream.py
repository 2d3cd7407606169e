"""The image the vision gateway sends on to Ximilar and the embedder.

Decoded once (format and size validated), cropped to `bbox` when one is given, downscaled when
larger than `MAX_SIDE`; a JPEG or PNG that needs neither travels as sent (no second lossy
encode).
"""

from __future__ import annotations

from typing import Final

from PIL import Image, ImageOps

from unde.vision.images import clamp_bbox, decode_image, encode_jpeg

#: Larger photos are downscaled before going to Ximilar/the embedder.
MAX_SIDE: Final = 1600


def prepare_upstream(data: bytes, bbox: list[float] | None, field: str, *,
                     max_pixels: int) -> tuple[Image.Image, bytes]:
    """The decoded (and cropped) image, and the bytes to send upstream."""
    image = decode_image(data, max_pixels=max_pixels, field=field)
    if bbox is not None:
        image = image.crop(clamp_bbox(bbox, image.size, field=f"{field}.bbox"))
        return image, encode_jpeg(image)
    if max(image.size) > MAX_SIDE:
        # contain() resizes into a new small image; copy() + thumbnail() held a full-size copy.
        return image, encode_jpeg(ImageOps.contain(image, (MAX_SIDE, MAX_SIDE)))
    if data[:2] == b"\xff\xd8" or data[:8] == b"\x89PNG\r\n\x1a\n":
        return image, data
    return image, encode_jpeg(image)
