"""Photo files named by a catalog CSV: read only from inside one folder, size checked before
reading, decoded in full, stored under a name made from their content.

Used by the importer, in the process that imports. A CSV is data from outside: its ``image``
cells must not reach files outside the images folder (through ``..``, an absolute path or a
symlink), and what ends up in MEDIA_ROOT must be a photo in a format the API accepts, named
with the extension of the format it decoded as, never with the name the CSV gave it.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from similarity.conf import similarity_settings
from similarity.ml.images import UPLOAD_FORMATS

# MPO is how Pillow names the JPEG files of many phone cameras (extra pictures appended).
EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class PhotoRejected(ValueError):
    """This photo cannot be imported; the message says why and what to do."""


@dataclass(frozen=True)
class Photo:
    """A decoded photo's bytes, its Pillow format and SHA-1."""

    data: bytes
    format: str
    checksum: str

    @property
    def file_name(self) -> str:
        """The name to store it under: its SHA-1 and the extension of its format."""
        return f"{self.checksum}{EXTENSIONS[self.format]}"


class PhotoFolder:
    """The folder photos are read from; ``image`` cells are paths relative to it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"images folder {root} does not exist; pass --images-root with the folder that holds the photos")

    def read(self, name: str) -> Photo:
        """Return the photo at ``name`` (relative to the folder), checked and decoded."""
        data = self._read_bytes(name, self._locate(name))
        return _decode(name, data)

    def _locate(self, name: str) -> Path:
        try:
            path = (self.root / name).resolve()  # follows symlinks, also of missing files
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            path = None
        # One message whether or not such a file exists outside: the CSV must not be able to
        # probe the rest of the disk.
        if path is None or not path.is_relative_to(self.root):
            raise PhotoRejected(
                f"unreadable image {name!r}: the path leads outside the images folder {self.root}; "
                "put the photo inside it or pass --images-root"
            )
        return path

    def _read_bytes(self, name: str, path: Path) -> bytes:
        limit = int(similarity_settings.MAX_IMAGE_BYTES)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            raise PhotoRejected(f"unreadable image {name!r}: file not found in the images folder {self.root}") from None
        except OSError as exc:
            raise PhotoRejected(f"unreadable image {name!r}: cannot open it ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise PhotoRejected(f"unreadable image {name!r}: not a regular file")
            if info.st_size == 0:
                raise PhotoRejected(f"unreadable image {name!r}: file is empty")
            if info.st_size > limit:
                raise PhotoRejected(_too_large(name, info.st_size, limit))
            try:
                data = handle.read(limit + 1)
            except OSError as exc:
                raise PhotoRejected(f"unreadable image {name!r}: cannot read it ({exc.strerror})") from None
        if len(data) > limit:  # it grew after the check
            raise PhotoRejected(_too_large(name, len(data), limit))
        return data


def _too_large(name: str, size: int, limit: int) -> str:
    return (
        f"unreadable image {name!r}: the file is {size:,} bytes; the limit is {limit:,} bytes "
        "(SIMILARITY['MAX_IMAGE_BYTES']); export a smaller photo"
    )


def _decode(name: str, data: bytes) -> Photo:
    """Decode ``data`` completely (a header check passes truncated files) as one of the
    formats the API accepts."""
    max_pixels = int(similarity_settings.MAX_IMAGE_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
                fmt, (width, height) = image.format or "", image.size
                if width * height > max_pixels:
                    raise PhotoRejected(
                        f"unreadable image {name!r}: {width}x{height} = {width * height:,} pixels; the limit is "
                        f"{max_pixels:,} (SIMILARITY['MAX_IMAGE_PIXELS']); export a smaller photo"
                    )
                image.load()
    except PhotoRejected:
        raise
    except UnidentifiedImageError:
        raise PhotoRejected(
            f"unreadable image {name!r}: not a JPEG, PNG, WebP or GIF image; convert it to one of these"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected(f"unreadable image {name!r}: refused as a decompression bomb ({exc})") from None
    except Exception as exc:  # Pillow's decoders raise many kinds of errors on damaged files
        raise PhotoRejected(f"unreadable image {name!r}: the file is truncated or corrupt ({exc}); export it again") from None
    if fmt not in EXTENSIONS:
        raise PhotoRejected(f"unreadable image {name!r}: {fmt} images are not accepted; convert it to JPEG, PNG, WebP or GIF")
    return Photo(data=data, format=fmt, checksum=hashlib.sha1(data).hexdigest())
