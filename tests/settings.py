"""Settings of the test run: the demo shop's, plus the app's own test app.

The app's tests (tests/similarity/) run against ``tests.testapp``; the demo's tests
(tests/catalog/) against its catalog, which stays registered first. ``tests.testenv`` names
this module, so the worker processes the tests start read it too.
"""
from __future__ import annotations

import copy

from config.settings import *  # noqa: F403
from config.settings import DATABASES, INSTALLED_APPS, SIMILARITY

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]

# Read replicas for the tests of SIMILARITY["READ_DATABASES"] (tests/similarity/test_read_replicas.py):
# "replica" is the test database under a second alias (its own connection), "replica_down" a
# server that refuses connections. Mirrors: no database is created or flushed for them, and a
# test may use them only when it names them (pytest.mark.django_db(databases=[...])).
DATABASES = {
    **DATABASES,
    "replica": {**copy.deepcopy(DATABASES["default"]), "TEST": {"MIRROR": "default"}},
    "replica_down": {
        "ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "127.0.0.1", "PORT": "9",
        "OPTIONS": {"connect_timeout": 2}, "TEST": {"MIRROR": "default"},
    },
}

SIMILARITY = {
    **SIMILARITY,
    "MODELS": {
        **SIMILARITY["MODELS"],
        "testapp.Gadget": "tests.testapp.adapters.GadgetAdapter",
        "testapp.Book": "tests.testapp.adapters.BookAdapter",
        "testapp.Listing": "tests.testapp.adapters.ListingAdapter",
    },
    # The suite's expected neighbours and scores are the dense channel's (fake encoders);
    # tests/similarity/test_lexical.py turns the lexical channel on where it tests it.
    "LEXICAL_WEIGHT": 0.0,
    # Fitting the fusion weights starts a new vector space (and real encode tasks) whenever a
    # test's catalog would rather have other weights: tests/similarity/test_fusion_weights.py
    # and the fit command's test turn it on where they test it.
    "FIT_FUSION_WEIGHTS": False,
}
