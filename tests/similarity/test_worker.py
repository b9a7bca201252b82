"""End to end through Redis and a real `celery worker` process: save -> vectors."""
from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from catalog.models import Product, ProductImage
from similarity.models import EmbeddingStatus, state_of
from tests.conftest import wait_for
from tests.factories import image_bytes, make_product, vectors_of

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def status_of(*products):
    return dict(Product.objects.filter(pk__in=[p.pk for p in products]).values_list("sku", "similarity_states__status"))


def test_saved_products_get_vectors_from_the_worker(celery_worker_process):
    good = make_product("W1", "无线 蓝牙 耳机 降噪", image=image_bytes((20, 20, 200)), category="数码 > 耳机")
    text_only = make_product("W2", "有线 耳机 3.5mm")
    bad = Product.objects.create(sku="W3", title="broken photo")
    photo = ProductImage(product=bad, position=0)
    photo.image.save("broken.jpg", ContentFile(b"\xff\xd8\xff\xe0 truncated"), save=False)
    photo.save()

    wait_for(
        lambda: set(status_of(good, text_only, bad).values()) <= {"ready", "failed"}
        and "pending" not in status_of(good, text_only, bad).values(),
        timeout=90,
        message="the worker to encode 3 products",
    )
    assert status_of(good, text_only, bad) == {"W1": "ready", "W2": "ready", "W3": "failed"}
    good.refresh_from_db()
    bad.refresh_from_db()
    assert vectors_of(good).fused is not None and len(vectors_of(good).image) == 1280
    assert state_of(bad).error.startswith("image:")

    # An edit re-encodes: the content hash changes.
    old_hash = state_of(good).content_hash
    good.title = "无线 蓝牙 耳机 主动降噪 Pro"
    good.save()
    wait_for(
        lambda: Product.objects.filter(pk=good.pk, similarity_states__status=EmbeddingStatus.READY).exclude(similarity_states__content_hash=old_hash).exists(),
        timeout=60,
        message="re-encoding after an edit",
    )
