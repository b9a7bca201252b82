"""Search by photo: checked before decoding, encoded by a real worker, 503 when none answers."""
from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import uuid
from unittest import mock

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
    wait_for(lambda: not Product.objects.filter(similarity_states__status="pending").exists(), 60, message="encoding")

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
    from similarity.indexing.spaces import ensure_configured_space

    ensure_configured_space("catalog.Product")
    # A queue nobody consumes, and a short wait.
    settings.SIMILARITY = {**settings.SIMILARITY, "QUERY_QUEUE": f"nobody-{uuid.uuid4().hex[:6]}", "QUERY_TIMEOUT": 1}
    response = client.post("/api/search/image/", {"image": upload(image_bytes(RED))})
    assert response.status_code == 503
    assert "no similarity worker answered within 1 s" in response.json()["detail"]


# Hostile and broken photos: a 400 naming the problem, never a 500.


def _photo(fmt: str) -> bytes:
    """A small noisy photo (noise makes the compressed stream long and fragile)."""
    rng = random.Random(fmt)
    image = Image.new("RGB", (96, 72))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(96 * 72)])
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def mutants(per_format: int = 50, seed: int = 0):
    """Deterministic broken variants of real photos: truncated, bytes flipped, runs zeroed,
    garbage inserted; the first 16 bytes stay, so the header still says what format it is."""
    rng = random.Random(seed)
    for fmt in ("JPEG", "PNG", "GIF", "WEBP"):
        base = _photo(fmt)
        for i in range(per_format):
            data = bytearray(base)
            kind = i % 4
            if kind == 0:
                data = data[: rng.randrange(16, len(data))]
            elif kind == 1:
                for _ in range(rng.randrange(1, 9)):
                    data[rng.randrange(16, len(data))] ^= 1 << rng.randrange(8)
            elif kind == 2:
                start = rng.randrange(16, len(data) - 1)
                data[start : start + rng.randrange(16, 257)] = bytes(min(len(data) - start, 256))
            else:
                at = rng.randrange(16, len(data))
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            yield f"{fmt}-{i}", bytes(data)


@pytest.fixture
def searchable():
    """One encoded product in the active space, so a photo search goes to the worker."""
    from similarity.indexing.writer import encode_objects

    product = make_product("R1", "红色 杯子", image=image_bytes(RED))
    encode_objects("catalog.Product", [product.pk])
    return product


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_two_hundred_broken_photos_are_400s_or_results_never_500s(client, celery_worker_process, searchable, settings):
    rest = settings.REST_FRAMEWORK
    settings.REST_FRAMEWORK = {**rest, "DEFAULT_THROTTLE_RATES": {**rest["DEFAULT_THROTTLE_RATES"], "image-search": "1000/min"}}
    statuses = {}
    for name, data in mutants():
        response = client.post("/api/search/image/", {"image": upload(data, f"{name}.bin")})
        statuses[name] = response.status_code
        assert response.status_code in (200, 400), (name, response.status_code, response.content[:300])
        if response.status_code == 400:
            assert response.json()["image"][0], name
    assert len(statuses) == 200
    refused = [name for name, status in statuses.items() if status == 400]
    # Every truncated photo is refused; most other damage is too (some still decode).
    assert {f"{fmt}-{i}" for fmt in ("JPEG", "PNG", "GIF", "WEBP") for i in range(0, 50, 4)} <= set(refused)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_photo_the_worker_cannot_decode_is_a_400_with_its_reason(client, celery_worker_process, searchable):
    photo = _photo("JPEG")
    truncated = photo[: len(photo) // 2]
    # As if the web process's own check had let it through (another Pillow, another build).
    with mock.patch("similarity.api.mixins.decode_image"):
        response = client.post("/api/search/image/", {"image": upload(truncated, "cut.jpg")})
    assert response.status_code == 400, response.content
    assert "truncated" in response.json()["image"][0]


@pytest.mark.django_db
def test_filters_are_checked_before_the_photo_is_sent(client, searchable):
    with mock.patch("similarity.tasks.encode_query_task.apply_async") as send:
        response = client.post("/api/search/image/?price_min=cheap", {"image": upload(image_bytes(RED))})
        assert response.status_code == 400 and "price_min" in response.json()
        response = client.post("/api/search/image/?is_active=maybe", {"image": upload(_photo("JPEG")[:600])})
        assert response.status_code == 400 and "is_active" in response.json()
    send.assert_not_called()


def _search_elsewhere(env: dict[str, str]) -> dict:
    """POST a photo search from a fresh process with ``env`` (another broker or result store)."""
    from django.db import connection

    from tests.conftest import ROOT, _database_url

    script = (
        "import json, sys, time, django\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "from django.test.utils import setup_test_environment\n"
        "from django.core.files.uploadedfile import SimpleUploadedFile\n"
        "setup_test_environment()\n"
        "photo = SimpleUploadedFile('q.png', sys.stdin.buffer.read(), content_type='image/png')\n"
        "started = time.monotonic()\n"
        "response = Client().post('/api/search/image/', {'image': photo})\n"
        "print(json.dumps({'status': response.status_code, 'body': response.json(),\n"
        "                  'seconds': round(time.monotonic() - started, 2)}))\n"
    )
    full_env = {**os.environ, "DATABASE_URL": _database_url(connection.settings_dict), **env}
    done = subprocess.run(
        [sys.executable, "-c", script], input=image_bytes(RED), env=full_env, cwd=ROOT, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


DEAD = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "env",
    [{"CELERY_BROKER_URL": DEAD, "CELERY_RESULT_BACKEND": DEAD}, {"CELERY_RESULT_BACKEND": DEAD}],
    ids=["broker-down", "result-store-down"],
)
def test_a_dead_broker_or_result_store_is_a_503(searchable, env):
    answer = _search_elsewhere(env)
    assert answer["status"] == 503, answer
    assert "unreachable" in answer["body"]["detail"]


def worst(policy: dict, connect_timeout: float) -> float:
    """The longest a retry policy can take when every connection attempt times out."""
    attempts = policy["max_retries"] + 1
    waits = sum(min(policy["interval_start"] + n * policy["interval_step"], policy["interval_max"]) for n in range(attempts - 1))
    return attempts * connect_timeout + waits


def test_a_dead_broker_or_result_store_is_given_up_on_within_the_budget():
    """The app's Celery options (similarity.celery.configure) bound a save and a photo search
    on a broker or result store that is down, every connection attempt timing out."""
    from config.celery import app
    from similarity.conf import similarity_settings
    from similarity.search.query_encoding import PUBLISH_RETRY_POLICY

    conf, budget = app.conf, similarity_settings.BROKER_TIMEOUT
    assert worst(conf.task_publish_retry_policy, conf.broker_transport_options.get("socket_connect_timeout", conf.broker_connection_timeout)) <= budget
    assert worst(conf.result_backend_transport_options["retry_policy"], conf.redis_socket_connect_timeout) <= budget
    assert worst(PUBLISH_RETRY_POLICY, conf.broker_connection_timeout) <= budget
    # Celery's own result-store policy would retry 20 times, a second apart.
    assert conf.result_backend_transport_options["retry_policy"]["max_retries"] < 20


@pytest.mark.django_db
def test_k_or_the_photo_given_twice_is_a_400(client):
    photo = image_bytes(RED)
    response = client.post("/api/search/image/?k=3", {"image": upload(photo), "k": 5})
    assert response.status_code == 400 and "given more than once" in response.json()["k"][0]
    response = client.post("/api/search/image/", {"image": [upload(photo), upload(photo, "b.png")]})
    assert response.status_code == 400 and "image" in response.json()


@pytest.mark.django_db
def test_no_form_body_is_a_400_naming_the_photo(client):
    response = client.post("/api/search/image/", data=b"", content_type="multipart/form-data; boundary=x")
    assert response.status_code == 400 and "image" in response.json()
    response = client.generic("POST", "/api/search/image/")
    assert response.status_code == 400 and "image" in response.json()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_answer_is_dropped_from_the_result_store_once_read(client, celery_worker_process, searchable):
    from config.celery import app
    from similarity.tasks import encode_query_task

    sent = []
    publish = encode_query_task.apply_async

    def remember(*args, **kwargs):
        result = publish(*args, **kwargs)
        sent.append(result.id)
        return result

    with mock.patch.object(encode_query_task, "apply_async", side_effect=remember):
        response = client.post("/api/search/image/", {"image": upload(image_bytes(RED))})
    assert response.status_code == 200 and len(sent) == 1
    assert app.backend.get(app.backend.get_key_for_task(sent[0])) is None
