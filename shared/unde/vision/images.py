"""Decoding untrusted image bytes safely, cropping, and re-encoding.

Every function that takes a photo goes through `decode_image`: it checks the container
before decoding (format, pixel count — decompression bombs), applies EXIF rotation, takes
the first frame of animations, and normalises every mode (CMYK, 16-bit, palette, alpha) to RGB.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from unde.errors import BadInput, UpstreamUnavailable

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
MIN_SIDE = 8

BBox = tuple[int, int, int, int]


#: Decodes running at once in one process. Decoding is CPU-bound (two cores per pod at most),
#: so more at once finish no sooner; each one briefly holds its decoded frame *and* its RGB
#: result (up to 7 bytes a pixel), which is the peak this bounds. Requests wait their turn.
DECODE_SLOTS = threading.BoundedSemaphore(2)
DECODE_WAIT_S = 20.0


def decode_image(data: bytes, *, max_pixels: int, field: str = "image") -> Image.Image:
    """Decode bytes into an RGB image or raise BadInput (415 format, 413 size, 422 broken).

    The pixel count is checked from the header, before any pixel is decoded; `max_pixels` is
    the function's budget (IMAGE_MAX_PIXELS, sized to its memory limit in the chart).
    """
    if not data:
        raise BadInput("image is empty (0 bytes)", field=field, status_code=422)
    if not DECODE_SLOTS.acquire(timeout=DECODE_WAIT_S):
        raise UpstreamUnavailable("image-decoder", "too many images are being decoded; retry")
    try:
        return to_rgb(_open_checked(data, max_pixels, field))
    except BadInput:
        raise
    except UnidentifiedImageError as exc:
        raise BadInput("body is not a recognisable image", field=field, status_code=415) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput("image exceeds the pixel limit", field=field, status_code=413) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadInput(f"image could not be decoded: {exc}", field=field) from exc
    finally:
        DECODE_SLOTS.release()


def _open_checked(data: bytes, max_pixels: int, field: str) -> Image.Image:
    """The first frame, decoded, after the format and size checks on its header."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        if image.format not in ALLOWED_FORMATS:
            raise BadInput(f"unsupported image format {image.format!r}; send JPEG, PNG or WebP",
                           field=field, status_code=415)
        width, height = image.size
        if width * height > max_pixels:
            raise BadInput(
                f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
                field=field, status_code=413)
        if min(width, height) < MIN_SIDE:
            raise BadInput(f"image is too small ({width}x{height})", field=field)
        image.seek(0)
        image.load()
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """EXIF-rotate and convert any PIL mode to 8-bit RGB (alpha composited on white).

    Memory: at most the decoded frame and its RGB result exist at once (RGBA: 4 + 3 bytes a
    pixel); the alpha is pasted straight from the RGBA frame (no band or RGBA copies), and the
    rotation happens on the RGB result, after the frame is gone.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image)  # RGB ← RGBA/LA with its own alpha: no conversion
        background.info = dict(image.info)  # the EXIF orientation travels with it
        image.close()
        image = background
    elif image.mode != "RGB":
        image = image.convert("RGB")
    ImageOps.exif_transpose(image, in_place=True)  # without in_place it copies even upright images
    return image


def clamp_bbox(bbox: Sequence[float], size: tuple[int, int], *, field: str = "bbox") -> BBox:
    """Validate `[x0, y0, x1, y1]` against an image size and round it to whole pixels."""
    if len(bbox) != 4:
        raise BadInput("bbox must be [x0, y0, x1, y1]", field=field)
    width, height = size
    x0, y0, x1, y1 = (round(float(value)) for value in bbox)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(width, x1), min(height, y1)
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        raise BadInput(f"bbox {list(bbox)} leaves no usable area in a {width}x{height} image",
                       field=field)
    return x0, y0, x1, y1


def crop(image: Image.Image, bbox: Sequence[float] | None) -> Image.Image:
    """The region of `image` inside `bbox` (the whole image when bbox is None)."""
    if bbox is None:
        return image
    return image.crop(clamp_bbox(bbox, image.size))


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image (how crops travel between functions)."""
    buffer = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even RGB
    rgb.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
