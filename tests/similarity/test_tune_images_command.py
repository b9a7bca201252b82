"""similarity_tune_images: tunes the image network on a registered model's photos into MODELS_DIR."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from django.core.management import CommandError, call_command

from tests.factories import GADGET as LABEL
from tests.factories import image_bytes, make_gadget

pytestmark = pytest.mark.django_db

EFFICIENTNET = "similarity.ml.encoders.image.EfficientNetLiteImageEncoder"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("similarity_tune_images", "--model", LABEL, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_refuses_an_encoder_it_cannot_tune(settings, tmp_path):
    settings.SIMILARITY = {**settings.SIMILARITY, "MODELS_DIR": str(tmp_path)}  # the suite's fake encoders
    with pytest.raises(CommandError, match="tunes EfficientNet-Lite0"):
        run()


def test_needs_photos_of_two_products(settings, tmp_path):
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_ENCODER": EFFICIENTNET, "MODELS_DIR": str(tmp_path)}
    make_gadget("G1", "red", image=image_bytes((200, 30, 30)))
    make_gadget("G2", "no photo")
    with pytest.raises(CommandError, match="1 usable photos"):
        run()


@pytest.mark.weights
def test_writes_weights_the_image_encoder_loads(settings, tmp_path):
    from similarity.ml.encoders.image import EfficientNetLiteImageEncoder

    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_ENCODER": EFFICIENTNET, "MODELS_DIR": str(tmp_path), "DEVICE": "cpu"}
    for i, colour in enumerate([(200, 30, 30), (30, 160, 40), (20, 40, 200)]):
        make_gadget(f"G{i}", f"gadget {i}", image=image_bytes(colour, size=(80, 60)))
    make_gadget("G9", "no photo")
    out = run("--views", "1")
    assert "tuning on 3 product photos (1 rows without a usable photo)" in out
    [path] = tmp_path.glob("images-testapp.gadget-*.pth")
    assert f"Set SIMILARITY['IMAGE_WEIGHTS'] = {str(path)!r}" in out
    vectors = EfficientNetLiteImageEncoder(weights_path=path, device="cpu").encode([Image.new("RGB", (40, 40), (9, 9, 9))])
    assert vectors.shape == (1, 1280) and np.isfinite(vectors).all()


@pytest.mark.weights
def test_photo_searches_are_encoded_with_the_tuned_weights(settings, tmp_path):
    """IMAGE_WEIGHTS set to the command's file: the worker's encode_query uses the tuned network."""
    import base64

    from similarity.indexing.encoding import encode_query
    from similarity.ml.encoders.image import EfficientNetLiteImageEncoder
    from tests.factories import space

    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_ENCODER": EFFICIENTNET, "MODELS_DIR": str(tmp_path), "DEVICE": "cpu"}
    for i, colour in enumerate([(200, 30, 30), (30, 160, 40)]):
        make_gadget(f"G{i}", f"gadget {i}", image=image_bytes(colour, size=(80, 60)))
    run("--views", "1", "--out", str(tmp_path / "tuned.pth"))
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_WEIGHTS": str(tmp_path / "tuned.pth")}
    photo = image_bytes((120, 90, 20), size=(90, 70), fmt="JPEG")
    vector = encode_query(space(LABEL).pk, "image", base64.b64encode(photo).decode())
    tuned = EfficientNetLiteImageEncoder(weights_path=tmp_path / "tuned.pth", device="cpu")
    imagenet = EfficientNetLiteImageEncoder(device="cpu")
    decoded = Image.open(io.BytesIO(photo))
    np.testing.assert_allclose(vector, tuned.encode([decoded])[0], atol=1e-5)
    assert float(vector @ imagenet.encode([decoded])[0]) < 0.9999
