"""Image files built to break decoders: broken, lying, polyglot, bombs, and odd-but-valid ones.

Each case says what a correct service answers: `ok` (decoded, 200), or the 4xx status of a
clear refusal. Built in memory with Pillow; the bombs are headers claiming 100 megapixels
(cheap to build, fatal to decode naively).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import cache

from PIL import Image

BOMB_SIDE = 10_000  # 10000 × 10000 = 100 megapixels


@dataclass(frozen=True)
class HostileImage:
    name: str
    data: bytes
    content_type: str
    expect: int | str  # "ok", or the exact 4xx status
    size: tuple[int, int] | None = None  # the upright size a correct decode reports


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _photo(size: tuple[int, int] = (120, 80), mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", size, (200, 60, 40))
    for x in range(0, size[0], 10):
        image.paste((20, 40, 160), (x, 0, x + 4, size[1]))
    return image.convert(mode) if mode != "RGB" else image


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit PNG of side × side pixels; all zeros, so it compresses to a few KB."""
    row = b"\0" + b"\0" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


def jpeg_bomb(side: int = BOMB_SIDE) -> bytes:
    """A small JPEG whose SOF header claims side × side pixels."""
    data = bytearray(_save(_photo((16, 16)), "JPEG"))
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            data[at + 5: at + 9] = struct.pack(">HH", side, side)
            return bytes(data)
    raise AssertionError("no SOF marker")


def gif_bomb() -> bytes:
    """A GIF whose logical screen and frame claim 65535 × 65535 pixels."""
    data = bytearray(_save(_photo((16, 16), "P"), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    at = data.find(b"\x2c")  # image descriptor
    data[at + 5: at + 9] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def exif_rotated() -> bytes:
    """Stored 120 × 80 with EXIF orientation 6 (rotate 90° CW): upright it is 80 × 120."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_photo((120, 80)), "JPEG", exif=exif.tobytes())


def animated(fmt: str) -> bytes:
    frames = [_photo((64, 64)).rotate(angle) for angle in (0, 90, 180)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (64, 48))
    image.putdata([(x * 1000) % 65535 for x in range(64 * 48)])
    return _save(image, "PNG")


def gif_js_polyglot() -> bytes:
    """Starts `GIF89a/*` (a GIF header whose width bytes open a JS comment), then JavaScript."""
    return b"GIF89a/*\x00\x00\x80\x00\x00*/=1;alert(document.domain);//" + b"\x00" * 32 + b";"


@cache
def cases() -> tuple[HostileImage, ...]:
    jpeg = _save(_photo(), "JPEG")
    png = _save(_photo(), "PNG")
    return (
        HostileImage("zero-byte", b"", "image/jpeg", 422),
        HostileImage("truncated-jpeg", jpeg[: len(jpeg) // 2], "image/jpeg", 422),
        HostileImage("truncated-png", png[: len(png) // 2], "image/png", 422),
        HostileImage("header-only-png", png[:33], "image/png", 415),
        HostileImage("text-as-jpeg", b"hello, this is not an image", "image/jpeg", 415),
        HostileImage("html-as-png", b"<html><script>alert(1)</script></html>", "image/png", 415),
        HostileImage("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9e9" height="9e9"/>',
                     "image/png", 415),
        HostileImage("tiff", _save(_photo(), "TIFF"), "image/jpeg", 415),
        HostileImage("bmp", _save(_photo(), "BMP"), "image/jpeg", 415),
        HostileImage("png-labelled-jpeg", png, "image/jpeg", "ok", (120, 80)),
        HostileImage("jpeg-as-octet-stream", jpeg, "application/octet-stream", "ok", (120, 80)),
        HostileImage("jpeg+zip-polyglot", jpeg + b"PK\x03\x04" + b"\x00" * 26 + b"evil.sh", "image/jpeg", "ok",
                     (120, 80)),
        HostileImage("jpeg+html-polyglot", jpeg + b"<html><script>alert(1)</script>", "image/jpeg", "ok",
                     (120, 80)),
        HostileImage("gif-js-polyglot", gif_js_polyglot(), "image/gif", 415),
        HostileImage("png-bomb-100MP", png_bomb(), "image/png", 413),
        HostileImage("jpeg-bomb-100MP", jpeg_bomb(), "image/jpeg", 413),
        HostileImage("gif-bomb-4GP", gif_bomb(), "image/gif", 413),
        HostileImage("too-small-1x1", _save(Image.new("RGB", (1, 1)), "PNG"), "image/png", 422),
        HostileImage("cmyk-jpeg", _save(_photo(mode="CMYK"), "JPEG"), "image/jpeg", "ok", (120, 80)),
        HostileImage("16-bit-png", sixteen_bit_png(), "image/png", "ok", (64, 48)),
        HostileImage("rgba-png", _save(_photo(mode="RGBA"), "PNG"), "image/png", "ok", (120, 80)),
        HostileImage("la-png", _save(_photo(mode="LA"), "PNG"), "image/png", "ok", (120, 80)),
        HostileImage("palette-transparent-png", _save(_photo(mode="P"), "PNG", transparency=0),
                     "image/png", "ok", (120, 80)),
        HostileImage("progressive-jpeg", _save(_photo(), "JPEG", progressive=True), "image/jpeg", "ok",
                     (120, 80)),
        HostileImage("exif-rotated-jpeg", exif_rotated(), "image/jpeg", "ok", (80, 120)),
        HostileImage("animated-gif", animated("GIF"), "image/gif", "ok", (64, 64)),
        HostileImage("animated-webp", animated("WEBP"), "image/webp", "ok", (64, 64)),
        HostileImage("lossless-webp", _save(_photo(), "WEBP", lossless=True), "image/webp", "ok", (120, 80)),
    )
