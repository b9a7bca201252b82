"""Celery wiring a host adds with one line: ``similarity.celery.configure(app)``.

Runs wherever the host's Celery app is created (web processes, workers, beat). It adds the
app's periodic tasks to the beat schedule (the sweeper, and clustering every
``CLUSTER_INTERVAL``), routes the app's tasks to their queues, keeps photo-search answers in
the broker's Redis when no result backend is set, and makes the broker and the
result store fail fast: a save never waits more than ``SIMILARITY["BROKER_TIMEOUT"]`` (1 s)
on a broker that is down (the row stays pending and the sweeper sends it later), and a photo
search gives up on a dead result store within about a second instead of Celery's 20 retries.
Options the host set itself are kept.
"""
from __future__ import annotations

from typing import Any

from similarity.conf import similarity_settings


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The app's periodic tasks, for ``app.conf.beat_schedule`` (or CELERY_BEAT_SCHEDULE)."""
    s = similarity_settings
    sweep = float(s.SWEEP_INTERVAL)
    schedule = {
        "similarity-sweep": {
            "task": "similarity.sweep",
            "schedule": sweep,
            # A sweep still queued when the next one is sent is of no use.
            "options": {"queue": s.QUEUE, "expires": sweep},
        },
    }
    if s.CLUSTER_INTERVAL:
        every = float(s.CLUSTER_INTERVAL)
        schedule["similarity-cluster"] = {
            "task": "similarity.cluster",
            "schedule": every,
            "options": {"queue": s.TRAINING_QUEUE, "expires": every},
        }
    return schedule


def task_routes() -> dict[str, dict[str, str]]:
    """Each of the app's tasks to its queue (the app names the queue when it sends one too)."""
    s = similarity_settings
    query = s.QUERY_QUEUE or s.QUEUE
    return {
        "similarity.encode": {"queue": s.QUEUE},
        "similarity.sweep": {"queue": s.QUEUE},
        "similarity.encode_query": {"queue": query},
        "similarity.train_model": {"queue": s.TRAINING_QUEUE},
        "similarity.cluster": {"queue": s.TRAINING_QUEUE},
        "similarity.suggest_categories": {"queue": s.TRAINING_QUEUE},
    }


# Two tries, 0.2 s apart; each connection attempt may take 40 % of the budget: 0.4 + 0.2 + 0.4.
RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def connect_timeout(budget: float) -> float:
    """The time one connection attempt may take within ``budget`` seconds of publishing."""
    return round(0.4 * budget, 3)


def configure(app: Any) -> None:
    """Add the app's schedule and routes to ``app`` and make its broker and result store fail fast.

    Applied when ``app`` loads its configuration (at once if it has): a host calls this while
    its Celery module is imported, which may be while its settings module is still importing
    (a settings module that imports the project's settings package), when the settings are
    not all there yet.
    """
    if app.configured:
        _configure(app)
    else:
        app.on_after_configure.connect(_configured, sender=app, weak=False)


def _configured(sender: Any, **kwargs: Any) -> None:
    """``on_after_configure`` of a host's Celery app: apply ``configure``."""
    _configure(sender)


def _configure(app: Any) -> None:
    conf = app.conf
    budget = float(similarity_settings.BROKER_TIMEOUT)
    if not conf.result_backend and str(conf.broker_url or "").startswith(("redis://", "rediss://")):
        # Search by photo waits for a worker's answer: by default in the broker's Redis.
        conf.result_backend = conf.broker_url
    conf.beat_schedule = {**beat_schedule(), **(conf.beat_schedule or {})}
    routes = conf.task_routes
    if routes is None or isinstance(routes, dict):
        conf.task_routes = {**task_routes(), **(routes or {})}
    if not _set_by_host(conf, "task_publish_retry_policy"):
        conf.task_publish_retry_policy = dict(RETRY_POLICY)
    timeout = connect_timeout(budget)
    conf.broker_transport_options = {"socket_connect_timeout": timeout, **(conf.broker_transport_options or {})}
    if not _set_by_host(conf, "broker_connection_timeout"):
        conf.broker_connection_timeout = timeout
    options = dict(conf.result_backend_transport_options or {})
    options.setdefault("retry_policy", dict(RETRY_POLICY))
    conf.result_backend_transport_options = options
    if not _set_by_host(conf, "redis_socket_connect_timeout"):
        conf.redis_socket_connect_timeout = timeout


def _set_by_host(conf: Any, key: str) -> bool:
    """Whether the host's configuration (not Celery's defaults) gives ``key``."""
    return any(key in layer for layer in conf.maps[:-1]) if hasattr(conf, "maps") else False
