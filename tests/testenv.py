"""Test environment, loaded as a pytest plugin (``-p tests.testenv``) before Django starts.

Sets the variables settings.py reads, so the test process and the worker processes it
starts share them: the test settings (tests/settings.py), fast fake encoders, private
queues, a private media folder.
"""
from __future__ import annotations

import os
import tempfile
import uuid

# The demo's settings plus the app's own test app (tests/testapp): the worker processes the
# tests start inherit it, so they know the test app's models too.
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ.setdefault("SIMILARITY_IMAGE_ENCODER", "similarity.ml.encoders.fake.ColorHistogramImageEncoder")
os.environ.setdefault("SIMILARITY_TEXT_ENCODER", "similarity.ml.encoders.fake.HashingTextEncoder")
_run = uuid.uuid4().hex[:8]
os.environ["SIMILARITY_QUEUE"] = f"similarity-test-{_run}"
os.environ["DATABASE_TEST_NAME"] = f"test_shop_{_run}"  # concurrent runs do not share a database
os.environ["SIMILARITY_TRAINING_QUEUE"] = f"similarity-training-test-{_run}"
os.environ["SIMILARITY_QUERY_QUEUE"] = f"similarity-query-test-{_run}"
os.environ["SIMILARITY_MODELS_DIR"] = tempfile.mkdtemp(prefix="shop-test-models-")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="shop-test-media-")
os.environ["SERVE_MEDIA"] = "1"  # the browser tests see uploaded photos
