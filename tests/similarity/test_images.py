"""Image decoding: clear refusals for bad files, correct handling of unusual ones."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from similarity.ml.encoders.base import to_rgb
from similarity.ml.images import ImageRejected, decode_image

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


# -- decode_image + to_rgb: unusual but valid files come out as a viewer would show them --

RED, BLUE, WHITE = (224, 32, 32), (32, 32, 224), (255, 255, 255)


def decoded_rgb(data: bytes) -> Image.Image:
    rgb = to_rgb(decode_image(data, **LIMITS))
    assert rgb.mode == "RGB"
    return rgb


def close(pixel, expected, tolerance=3) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def test_cmyk_jpeg_keeps_its_colour():
    image = Image.new("RGB", (32, 32), RED).convert("CMYK")
    data = encoded(image, "JPEG", quality=100, subsampling=0)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert close(decoded_rgb(data).getpixel((16, 16)), RED)


def test_16_bit_greyscale_png_keeps_its_gradient():
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (8, 1))
    data = encoded(Image.fromarray(ramp), "PNG")
    assert decode_image(data, **LIMITS).mode == "I;16"
    row = np.asarray(decoded_rgb(data))[0, :, 0].astype(int)
    # Scaled to 8 bits, not clipped: Pillow's own convert() turns most of it white.
    np.testing.assert_allclose(row, np.arange(256), atol=1)
    assert (np.diff(row) >= 0).all()


def test_paletted_png_with_transparency_is_composited_on_white():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, *RED])  # index 0 (black) is the transparent one
    image.paste(1, (2, 2, 6, 6))
    rgb = decoded_rgb(encoded(image, "PNG", transparency=0))
    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((4, 4)) == RED


@pytest.mark.parametrize(
    "mode, key, opaque",
    [("L", 0, (90, 90, 90)), ("RGB", (0, 0, 0), RED)],
    ids=["greyscale", "rgb"],
)
def test_png_transparent_key_colour_is_composited_on_white(mode, key, opaque):
    image = Image.new(mode, (8, 8), key)
    image.paste(opaque[0] if mode == "L" else opaque, (2, 2, 6, 6))
    rgb = decoded_rgb(encoded(image, "PNG", transparency=key))
    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((4, 4)) == opaque


def test_exif_rotation_moves_the_pixels():
    image = Image.new("RGB", (40, 20), RED)
    image.paste(BLUE, (20, 0, 40, 20))  # red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red on top, blue below
    rgb = decoded_rgb(encoded(image, "JPEG", exif=exif, quality=100, subsampling=0))
    assert rgb.size == (20, 40)
    assert close(rgb.getpixel((10, 5)), RED)
    assert close(rgb.getpixel((10, 35)), BLUE)


def test_a_phone_cameras_jpeg_with_a_second_picture_is_a_jpeg():
    """Pillow calls it MPO; it is a JPEG file, and most phones write it."""
    import io

    from PIL import Image

    from similarity.ml.images import check_upload, decode_image

    first, second = Image.new("RGB", (32, 24), (200, 0, 0)), Image.new("RGB", (32, 24), (0, 200, 0))
    buf = io.BytesIO()
    first.save(buf, format="MPO", save_all=True, append_images=[second])
    data = buf.getvalue()
    assert check_upload(data, max_bytes=10**6, max_pixels=10**6) == ("JPEG", 32, 24)
    image = decode_image(data, max_bytes=10**6, max_pixels=10**6, formats=("JPEG",))
    assert image.size == (32, 24) and image.getpixel((5, 5))[0] > 150
