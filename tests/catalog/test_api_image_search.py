"""Search by photo: checked before decoding, encoded by a real worker, 503 when none answers."""
from __future__ import annotations

import io
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from catalog.models import Product
from tests.conftest import wait_for
from tests.factories import image_bytes, make_product

RED, BLUE = (220, 30, 30), (30, 30, 220)


def upload(data: bytes, name: str = "query.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/png")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_photo_finds_the_products_that_look_like_it(client, celery_worker_process):
    make_product("R1", "红色 杯子", image=image_bytes(RED))
    make_product("R2", "红色 盘子", image=image_bytes((200, 40, 40)))
    make_product("B1", "蓝色 杯子", image=image_bytes(BLUE))
    make_product("B2", "蓝色 碗", image=image_bytes(BLUE), is_active=False)
    wait_for(lambda: not Product.objects.filter(embedding_status="pending").exists(), 60, message="encoding")

    response = client.post("/api/search/image/", {"image": upload(image_bytes((215, 35, 30), size=(300, 200))), "k": 3})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["item"]["sku"] for r in results][:2] in (["R1", "R2"], ["R2", "R1"])
    assert "B2" not in [r["item"]["sku"] for r in results]  # inactive
    assert results[0]["explanation"]["image_similarity"] == pytest.approx(results[0]["score"], abs=1e-3)
    assert results[0]["score"] > results[-1]["score"]


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (12_000, 6_000)).save(buf, format="PNG")  # ~8 KB, 72 Mpx
    return buf.getvalue()


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    return buf.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"%PDF-1.4 not a photo", "not an image"),
        (_tiff(), "TIFF images are not accepted"),
        (_bomb(), "the limit is 50,000,000 pixels"),
    ],
    ids=["empty", "pdf", "tiff", "bomb"],
)
def test_bad_uploads_are_400_naming_the_limit(client, data, message):
    response = client.post("/api/search/image/", {"image": upload(data)})
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()["image"])


@pytest.mark.django_db
def test_a_photo_over_the_byte_limit_is_refused_before_decoding(client, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "MAX_QUERY_IMAGE_BYTES": 1000}
    response = client.post("/api/search/image/", {"image": upload(image_bytes(size=(400, 400), fmt="BMP"))})
    assert response.status_code == 400
    assert "the limit is 1,000 bytes" in response.json()["image"][0]


@pytest.mark.django_db
def test_missing_upload_is_400(client):
    response = client.post("/api/search/image/", {"k": 3})
    assert response.status_code == 400 and "image" in response.json()


@pytest.mark.django_db
def test_no_worker_answering_is_a_503_with_a_reason(client, settings):
    make_product("R1", "红色 杯子", image=image_bytes(RED))
    from similarity.spaces import ensure_configured_space

    ensure_configured_space("catalog.Product")
    # A queue nobody consumes, and a short wait.
    settings.SIMILARITY = {**settings.SIMILARITY, "QUERY_QUEUE": f"nobody-{uuid.uuid4().hex[:6]}", "QUERY_TIMEOUT": 1}
    response = client.post("/api/search/image/", {"image": upload(image_bytes(RED))})
    assert response.status_code == 503
    assert "no similarity worker answered within 1 s" in response.json()["detail"]
