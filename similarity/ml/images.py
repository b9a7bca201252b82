"""Decode product photos safely: size limits, truncated files, bombs, EXIF rotation.

Pure Pillow, no Django; runs in the worker before images reach an encoder. Every refusal is
an ``ImageRejected`` whose message a merchandiser can act on.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError


class ImageRejected(ValueError):
    """The image cannot be used; the message says why."""


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Return a fully loaded, upright, single-frame image decoded from ``data``.

    ``formats`` (Pillow format names) restricts the decoders tried; None tries them all.

    Raises:
        ImageRejected: empty, too large, not an image, truncated or corrupt data, or more
            pixels than ``max_pixels`` (a decompression bomb).
    """
    if not data:
        raise ImageRejected("image file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRejected(
            f"image file is {len(data):,} bytes, over the limit of {max_bytes:,} "
            "(SIMILARITY['MAX_IMAGE_BYTES'])"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"image is {width}x{height} = {width * height:,} pixels, over the limit "
                    f"of {max_pixels:,} (SIMILARITY['MAX_IMAGE_PIXELS'])"
                )
            image.seek(0)  # animated GIF/WebP/APNG: the first frame
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image, or an image format Pillow cannot read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"image rejected as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"image is truncated or corrupt: {exc}") from None
    except Exception as exc:  # Pillow's decoders raise other types on hostile data too
        raise ImageRejected(f"image is corrupt ({type(exc).__name__}: {exc})") from None
    return image


UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
# Pillow names a JPEG that carries a second picture (most phone cameras) "MPO".
SAME_FORMAT = {"MPO": "JPEG"}


def check_upload(data: bytes, *, max_bytes: int, max_pixels: int, formats: tuple[str, ...] = UPLOAD_FORMATS) -> tuple[str, int, int]:
    """Check an uploaded photo from its header, without decoding it; return (format, w, h).

    Cheap: run it first, then ``decode_image`` (with the same limits) to catch truncated or
    corrupt pixel data before the photo goes anywhere.

    Raises:
        ImageRejected: empty, over ``max_bytes``, not an image, a format not in
            ``formats``, or more pixels than ``max_pixels``; the message names the limit.
    """
    if not data:
        raise ImageRejected("the uploaded file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRejected(f"the photo is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                fmt, (width, height) = image.format or "", image.size
        fmt = SAME_FORMAT.get(fmt, fmt)
    except Exception:  # any header Pillow cannot parse: UnidentifiedImageError, struct.error...
        raise ImageRejected(f"not an image this service reads; send one of {', '.join(formats)}") from None
    if fmt not in formats:
        raise ImageRejected(f"{fmt} images are not accepted; send one of {', '.join(formats)}")
    if width * height > max_pixels:
        raise ImageRejected(
            f"the photo is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels"
        )
    return fmt, width, height
