"""CSV importer and media serving against hostile input: paths that leave the images folder,
symlinks, files that are not photos, polyglots, truncated and huge files."""
from __future__ import annotations

import hashlib
import io
import os
import re
import tracemalloc
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from catalog.importer import import_csv
from catalog.models import Product, ProductImage
from tests import factories
from tests.factories import image_bytes

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = ["sku", "title", "price", "category_path", "image"]
GENERATED_NAME = re.compile(r"products/[^/]+/[0-9a-f]{40}\.(jpg|png|webp|gif)")
POLYGLOT = image_bytes((0, 128, 0), fmt="GIF") + b"<html><body><script>alert(document.domain)</script></body></html>"
XBM = b"#define notes_width 8\n#define notes_height 2\nstatic char notes_bits[] = { 0x00, 0x01 };\n"


def write_csv(path: Path, rows: list[dict]) -> Path:
    return factories.write_csv(path, rows, HEADER)


def reasons(report) -> dict[str, tuple[int, str]]:
    return {sku: (line, reason) for line, sku, reason in report.skipped}


@pytest.fixture
def shop(tmp_path) -> Path:
    """tmp/shop/images/ok.png beside tmp/secret/passport.jpg, a photo that must stay private."""
    (tmp_path / "shop" / "images").mkdir(parents=True)
    (tmp_path / "shop" / "images" / "ok.png").write_bytes(image_bytes((255, 0, 0)))
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "passport.jpg").write_bytes(image_bytes((1, 2, 3), fmt="JPEG"))
    return tmp_path / "shop"


def test_paths_leaving_the_images_folder_are_refused_alike(shop, sent):
    secret = shop.parent / "secret" / "passport.jpg"
    (shop / "images" / "link.jpg").symlink_to(secret)
    (shop / "images" / "dangling.jpg").symlink_to(shop.parent / "secret" / "missing.jpg")
    (shop / "images" / "linked-dir").symlink_to(shop.parent / "secret", target_is_directory=True)
    rows = [
        {"sku": "dotdot", "title": "护照", "image": "../secret/passport.jpg"},
        {"sku": "dotdot-missing", "title": "x", "image": "../secret/missing.jpg"},
        {"sku": "absolute", "title": "x", "image": str(secret)},
        {"sku": "symlink", "title": "x", "image": "images/link.jpg"},
        {"sku": "dangling", "title": "x", "image": "images/dangling.jpg"},
        {"sku": "via-dir", "title": "x", "image": "images/linked-dir/passport.jpg"},
        {"sku": "ok", "title": "红色T恤", "image": "images/ok.png"},
    ]
    report = import_csv(write_csv(shop / "products.csv", rows))

    assert list(Product.objects.values_list("sku", flat=True)) == ["ok"]
    skipped = reasons(report)
    assert [skipped[sku][0] for sku in ("dotdot", "dotdot-missing", "absolute", "symlink", "dangling", "via-dir")] == [2, 3, 4, 5, 6, 7]
    # Whether the file outside exists or not, the message is the same but for the name.
    messages = {skipped[row["sku"]][1].replace(repr(row["image"]), "NAME") for row in rows[:-1]}
    assert messages == {
        f"unreadable image NAME: the path leads outside the images folder {shop.resolve()}; "
        "put the photo inside it or pass --images-root"
    }
    assert not ProductImage.objects.filter(checksum=hashlib.sha1(secret.read_bytes()).hexdigest()).exists()


def test_images_root_is_where_photos_are_read_from(tmp_path, sent, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "jacket.png").write_bytes(image_bytes((0, 0, 255)))
    csv_path = write_csv(tmp_path / "exports" / "products.csv", [{"sku": "j-1", "title": "牛仔夹克", "image": "jacket.png"}])

    report = import_csv(csv_path)  # default: the CSV's folder, where there is no jacket.png
    assert "file not found in the images folder" in reasons(report)["j-1"][1]

    call_command("import_products", str(csv_path), "--images-root", str(photos), "--no-progress")
    assert "1 rows: 1 created" in capsys.readouterr().out
    assert Product.objects.get(sku="j-1").primary_image.image.read() == image_bytes((0, 0, 255))

    with pytest.raises(CommandError, match="images folder .* does not exist"):
        call_command("import_products", str(csv_path), "--images-root", str(tmp_path / "nowhere"), "--no-progress")


def test_only_formats_the_api_accepts_are_stored(shop, sent):
    (shop / "images" / "notes.xbm").write_bytes(XBM)
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(bmp, "BMP")
    (shop / "images" / "photo.bmp").write_bytes(bmp.getvalue())
    rows = [
        {"sku": "xbm", "title": "x", "image": "images/notes.xbm"},
        {"sku": "bmp", "title": "x", "image": "images/photo.bmp"},
        {"sku": "ok", "title": "x", "image": "images/ok.png"},
    ]
    report = import_csv(write_csv(shop / "products.csv", rows))

    assert list(Product.objects.values_list("sku", flat=True)) == ["ok"]
    skipped = reasons(report)
    assert skipped["xbm"] == (2, "unreadable image 'images/notes.xbm': not a JPEG, PNG, WebP or GIF image; convert it to one of these")
    assert skipped["bmp"][0] == 3 and "not a JPEG, PNG, WebP or GIF image" in skipped["bmp"][1]


def test_stored_names_are_generated_with_the_decoded_format(shop, sent):
    (shop / "images" / "evil.html").write_bytes(POLYGLOT)
    (shop / "images" / "photo.jpg").write_bytes(image_bytes((0, 0, 255)))  # a PNG named .jpg
    rows = [
        {"sku": "poly", "title": "x", "image": "images/evil.html"},
        {"sku": "png", "title": "x", "image": "images/photo.jpg"},
    ]
    report = import_csv(write_csv(shop / "products.csv", rows))

    assert report.created == 2 and not report.skipped
    names = {p.sku: p.primary_image.image.name for p in Product.objects.all()}
    assert all(GENERATED_NAME.fullmatch(name) for name in names.values()), names
    assert names["poly"].endswith(".gif")
    assert names["png"].endswith(".png")
    stored = Path(settings.MEDIA_ROOT) / names["poly"]
    assert stored.resolve().is_relative_to(Path(settings.MEDIA_ROOT).resolve())
    assert stored.read_bytes() == POLYGLOT


def test_truncated_photo_is_refused(shop, sent):
    noisy = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noisy, "JPEG")
    (shop / "images" / "cut.jpg").write_bytes(noisy.getvalue()[: len(noisy.getvalue()) // 2])
    report = import_csv(write_csv(shop / "products.csv", [{"sku": "cut", "title": "x", "image": "images/cut.jpg"}]))

    assert not Product.objects.exists()
    line, reason = reasons(report)["cut"]
    assert line == 2 and "truncated or corrupt" in reason


def test_huge_photo_is_refused_from_its_size_without_reading_it(shop, sent):
    with (shop / "images" / "huge.jpg").open("wb") as fh:
        fh.truncate(600 * 2**20)  # sparse: no disk used
    csv_path = write_csv(shop / "products.csv", [{"sku": "huge", "title": "x", "image": "images/huge.jpg"}])

    tracemalloc.start()
    try:
        report = import_csv(csv_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 64 * 2**20
    line, reason = reasons(report)["huge"]
    assert line == 2
    assert "the file is 629,145,600 bytes; the limit is 20,971,520 bytes (SIMILARITY['MAX_IMAGE_BYTES'])" in reason


def test_media_is_served_with_nosniff_and_its_image_type(shop, client, sent):
    (shop / "images" / "evil.html").write_bytes(POLYGLOT)
    import_csv(write_csv(shop / "products.csv", [{"sku": "poly", "title": "x", "image": "images/evil.html"}]))
    url = Product.objects.get(sku="poly").primary_image.image.url

    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == POLYGLOT

    # A page someone put into MEDIA_ROOT by other means is a download, never a page of this origin.
    page = Path(settings.MEDIA_ROOT) / f"page-{uuid.uuid4().hex}.html"
    page.write_bytes(POLYGLOT)
    try:
        response = client.get(f"/{settings.MEDIA_URL.strip('/')}/{page.name}")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"] == "attachment"
        assert response["X-Content-Type-Options"] == "nosniff"
    finally:
        page.unlink()
