"""Image decoding: clear refusals for bad files, correct handling of unusual ones."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from similarity.images import ImageRejected, decode_image

LIMITS = dict(max_bytes=5_000_000, max_pixels=10_000_000)


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_zero_bytes():
    with pytest.raises(ImageRejected, match="empty"):
        decode_image(b"", **LIMITS)


def test_not_an_image():
    with pytest.raises(ImageRejected, match="not an image"):
        decode_image(b"%PDF-1.4 this is not a photo", **LIMITS)


def test_truncated_jpeg():
    data = encoded(Image.new("RGB", (256, 256), (10, 200, 30)), "JPEG")
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2], **LIMITS)


def test_too_many_bytes_names_the_setting():
    data = encoded(Image.new("RGB", (64, 64)), "PNG")
    with pytest.raises(ImageRejected, match="MAX_IMAGE_BYTES"):
        decode_image(data, max_bytes=10, max_pixels=10_000)


def test_decompression_bomb_is_refused_before_decoding():
    data = encoded(Image.new("1", (6000, 6000)), "PNG")  # tiny file, 36 Mpx
    with pytest.raises(ImageRejected, match="MAX_IMAGE_PIXELS"):
        decode_image(data, max_bytes=5_000_000, max_pixels=1_000_000)


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    out = decode_image(encoded(image, "JPEG", exif=exif), **LIMITS)
    assert out.size == (20, 40)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue(), **LIMITS)
    assert out.convert("RGB").getpixel((0, 0))[0] > 200
