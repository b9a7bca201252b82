"""A poison input never kills a batch: one batch of bad and odd photos through a real worker.

Twelve gadgets are created in one transaction inside ``collect_encodes()`` (as the importer
does), so their encodes reach the worker together, as one task. Files that cannot be used
end ``failed`` with a reason a merchandiser can read; unusual but valid files, and a gadget
with a huge text, end ``ready``, and their vectors are those of the pictures a viewer shows.
"""
from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
from django.db import transaction
from PIL import Image

from similarity import backends
from similarity.conf import similarity_settings
from similarity.indexing.queue import collect_encodes
from similarity.models import state_of
from similarity.registry import get_adapter
from tests.conftest import wait_for
from tests.factories import make_gadget, vectors_of
from tests.testapp.models import Gadget

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

RED, BLUE, WHITE, BLACK = (224, 32, 32), (32, 32, 224), (255, 255, 255), (0, 0, 0)
HUGE = 1_000_000  # characters: a 1 MB text


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def two_tone(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """Red on the left, blue on the right: rotating it changes the fake encoder's vector."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return image


def lossless_jpeg(image: Image.Image, **kw) -> bytes:
    return encoded(image, "JPEG", quality=100, subsampling=0, **kw)


# -- bad files: each must fail alone, with its reason -------------------------------------

def corrupt_jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0" + np.random.default_rng(20240601).bytes(8192)


def truncated_jpeg() -> bytes:
    data = encoded(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG")
    return data[: len(data) // 2]


def not_an_image() -> bytes:
    return b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def decompression_bomb() -> bytes:
    """A few kB of 1-bit PNG with more pixels than SIMILARITY['MAX_IMAGE_PIXELS'].

    The limit is not read from the environment, so the worker has the same default as
    this process; the image is sized from it.
    """
    width = 10_000
    height = similarity_settings.MAX_IMAGE_PIXELS // width + 1_000
    data = encoded(Image.new("1", (width, height)), "PNG")
    assert len(data) < similarity_settings.MAX_IMAGE_BYTES
    return data


# -- unusual but valid files: (file, the picture a viewer shows, a picture that would be wrong)

def cmyk_jpeg():
    picture = two_tone()
    return lossless_jpeg(picture.convert("CMYK")), picture, Image.new("RGB", picture.size, BLACK)


def grey_16_bit_png():
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    shown = Image.fromarray((ramp / 257).round().astype(np.uint8), "L").convert("RGB")
    return encoded(image, "PNG"), shown, image.convert("RGB")  # Pillow's convert saturates to white


def paletted_png_with_transparency():
    image = Image.new("P", (64, 64), 0)
    image.putpalette([*BLACK, *RED])  # index 0 is black and transparent
    image.paste(1, (16, 16, 48, 48))
    shown, uncomposited = Image.new("RGB", (64, 64), WHITE), Image.new("RGB", (64, 64), BLACK)
    for picture in (shown, uncomposited):
        picture.paste(RED, (16, 16, 48, 48))
    return encoded(image, "PNG", transparency=0), shown, uncomposited


def animated_gif():
    first, second = Image.new("RGB", (64, 64), RED), Image.new("RGB", (64, 64), BLUE)
    buf = io.BytesIO()
    first.save(buf, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)
    return buf.getvalue(), first, second


def exif_rotated_jpeg():
    stored = two_tone((64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red on top, blue below
    return lossless_jpeg(stored, exif=exif), stored.transpose(Image.Transpose.ROTATE_270), stored


def valid_png():
    picture = two_tone()
    return encoded(picture, "PNG"), picture, picture.transpose(Image.Transpose.ROTATE_90)


BAD = {
    # code: (file, words its embedding_error must contain)
    "P-CORRUPT": (corrupt_jpeg, r"corrupt|not an image"),
    "P-TRUNCATED": (truncated_jpeg, r"truncated"),
    "P-EMPTY": (lambda: b"", r"empty|0 bytes"),
    "P-PDF": (not_an_image, r"not an image"),
    "P-BOMB": (decompression_bomb, r"MAX_IMAGE_PIXELS|decompression bomb"),
}
GOOD = {
    "P-PNG": valid_png,
    "P-CMYK": cmyk_jpeg,
    "P-16BIT": grey_16_bit_png,
    "P-PALETTE": paletted_png_with_transparency,
    "P-GIF": animated_gif,
    "P-EXIF": exif_rotated_jpeg,
}
HUGE_TEXT_SKU = "P-HUGE-TEXT"


def worker_log_tail(proc, chars: int = 3000) -> str:
    """The end of the worker's log (its stdout), for failure messages."""
    try:
        with open(os.readlink(f"/proc/{proc.pid}/fd/1"), errors="replace") as fh:
            return fh.read()[-chars:]
    except OSError:
        return "(worker log not readable)"


def numbered_words(prefix: str, chars: int) -> str:
    """Distinct words, so a truncated text encodes differently from the whole text."""
    words, size, i = [], 0, 0
    while size < chars:
        words.append(f"{prefix}{i}")
        size += len(words[-1]) + 1
        i += 1
    return " ".join(words)[:chars]


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_poison_inputs_fail_alone_and_the_rest_of_the_batch_is_encoded(celery_worker_process):
    files = {sku: build() for sku, (build, _) in BAD.items()}
    valid = {sku: build() for sku, build in GOOD.items()}
    # A 1 MB name where the column allows it (name is varchar(300) here: the column length
    # is the limit, and a longer name cannot be saved at all), and 1 MB of notes.
    title_limit = Gadget._meta.get_field("name").max_length or HUGE
    huge_title = numbered_words("title", min(HUGE, title_limit))
    huge_description = numbered_words("description", HUGE)

    with transaction.atomic(), collect_encodes():
        for sku, data in files.items():
            make_gadget(sku, f"poison {sku}", image=data)
        for sku, (data, _, _) in valid.items():
            make_gadget(sku, f"valid {sku}", image=data)
        make_gadget(HUGE_TEXT_SKU, huge_title, notes=huge_description)
    skus = [*BAD, *GOOD, HUGE_TEXT_SKU]
    gadgets = Gadget.objects.filter(code__in=skus)

    def settled():
        statuses = dict(gadgets.values_list("code", "similarity_states__status"))
        return len(statuses) == len(skus) and set(statuses.values()) <= {"ready", "failed"}

    wait_for(settled, timeout=180, message=f"the worker to settle {len(skus)} gadgets")

    rows = {g.code: g for g in gadgets}
    log = worker_log_tail(celery_worker_process)
    statuses = {sku: (state_of(p).status, state_of(p).error) for sku, p in rows.items()}
    assert {sku: s for sku, (s, _) in statuses.items()} == {
        **{sku: "failed" for sku in BAD},
        **{sku: "ready" for sku in GOOD},
        HUGE_TEXT_SKU: "ready",
    }, f"{statuses}\n--- worker log ---\n{log}"
    # They were one batch: one encode_objects call stamps every row with the same time.
    assert len({state_of(p).encoded_at for p in rows.values()}) == 1, (
        f"expected one batch, got encoded_at {sorted({state_of(p).encoded_at for p in rows.values()})}"
    )

    for sku, (_, reason) in BAD.items():
        error = state_of(rows[sku]).error
        assert error.startswith("image:"), (sku, error)
        assert re.search(reason, error, re.IGNORECASE), (sku, error)
        assert vectors_of(rows[sku]) is None, sku

    image_encoder = backends.get_image_encoder()
    for sku, (_, shown, wrong) in valid.items():
        row = rows[sku]
        assert state_of(row).error == "", (sku, state_of(row).error)
        assert state_of(row).modalities == "image+text", sku
        vectors = vectors_of(row)
        assert vectors.image is not None and len(vectors.image) == similarity_settings.IMAGE_DIM, sku
        assert vectors.fused is not None, sku
        # The worker encoded the picture a viewer shows (upright, first frame, on white,
        # 16 bits scaled down), not a misread one. The fake encoders match across processes.
        expected, misread = image_encoder.encode([shown, wrong])
        got = np.asarray(vectors.image)
        assert cosine(got, expected) > 0.99, (sku, cosine(got, expected))
        assert cosine(got, expected) > cosine(got, misread) + 0.03, (sku, cosine(got, expected), cosine(got, misread))

    huge = rows[HUGE_TEXT_SKU]
    assert huge.name == huge_title and len(huge.notes) == HUGE  # the row keeps its full text
    huge_vectors = vectors_of(huge)
    assert state_of(huge).modalities == "text" and huge_vectors.image is None
    assert huge_vectors.text is not None and huge_vectors.fused is not None
    text = get_adapter(huge).get_text(huge)
    (expected_text,) = backends.get_text_encoder().encode([text[: similarity_settings.MAX_TEXT_CHARS]])
    np.testing.assert_allclose(np.asarray(huge_vectors.text), expected_text, atol=1e-6)
