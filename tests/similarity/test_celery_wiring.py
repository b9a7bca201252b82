"""What ``similarity.celery.configure(app)`` gives a host's Celery app, and queue names."""
from __future__ import annotations

import os

from celery import Celery

from similarity.celery import beat_schedule, configure
from similarity.conf import similarity_settings


def fresh_app(**conf) -> Celery:
    app = Celery("host", set_as_current=False)
    app.conf.update(conf)
    return app


def test_configure_adds_the_schedule_routes_and_fail_fast_options(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "QUEUE": "q1", "TRAINING_QUEUE": "q2", "QUERY_QUEUE": "q3", "CLUSTER_INTERVAL": 3600}
    app = fresh_app()
    configure(app)
    conf = app.conf
    assert conf.beat_schedule["similarity-sweep"]["options"]["queue"] == "q1"
    assert conf.beat_schedule["similarity-cluster"] == {
        "task": "similarity.cluster", "schedule": 3600.0, "options": {"queue": "q2", "expires": 3600.0}
    }
    assert conf.task_routes["similarity.encode_query"] == {"queue": "q3"}
    assert conf.task_routes["similarity.train_model"] == {"queue": "q2"}
    assert conf.task_publish_retry_policy["max_retries"] == 1
    assert conf.broker_transport_options["socket_connect_timeout"] == 0.4
    assert conf.redis_socket_connect_timeout == 0.4


def test_the_hosts_own_options_are_kept(settings):
    app = fresh_app(
        task_publish_retry_policy={"max_retries": 5}, broker_transport_options={"socket_connect_timeout": 3},
        beat_schedule={"mine": {"task": "shop.nightly", "schedule": 60}}, task_routes={"similarity.encode": {"queue": "gpu"}},
    )
    configure(app)
    assert app.conf.task_publish_retry_policy == {"max_retries": 5}
    assert app.conf.broker_transport_options["socket_connect_timeout"] == 3
    assert set(app.conf.beat_schedule) == {"mine", "similarity-sweep", "similarity-cluster"}
    assert app.conf.task_routes["similarity.encode"] == {"queue": "gpu"}


def test_no_clustering_entry_when_its_interval_is_zero(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "CLUSTER_INTERVAL": 0}
    assert set(beat_schedule()) == {"similarity-sweep"}


def test_queues_are_namespaced_by_the_project_unless_named(settings):
    settings.SIMILARITY = {k: v for k, v in settings.SIMILARITY.items() if not k.endswith("QUEUE")}
    project = os.environ["DJANGO_SETTINGS_MODULE"].split(".")[0]
    assert (similarity_settings.QUEUE, similarity_settings.TRAINING_QUEUE, similarity_settings.QUERY_QUEUE) == (
        f"{project}.similarity", f"{project}.similarity-training", f"{project}.similarity-query"
    )
    settings.SIMILARITY = {**settings.SIMILARITY, "QUEUE_PREFIX": "eu-shop:"}
    assert similarity_settings.QUEUE == "eu-shop:similarity"
    settings.SIMILARITY = {**settings.SIMILARITY, "QUEUE": "encode"}
    assert similarity_settings.QUEUE == "encode"


def test_a_settings_module_importing_the_projects_settings_gets_its_own_queues():
    """tests.settings imports config.settings, whose package imports the Celery app while
    tests.settings is still half-loaded: configure(app) must not read the settings then."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = (
        "from django.conf import settings; settings.INSTALLED_APPS\n"
        "from config.celery import app\n"
        "from similarity.conf import similarity_settings as s\n"
        "print(s.QUEUE, app.conf.task_routes['similarity.encode']['queue'], "
        "app.conf.beat_schedule['similarity-cluster']['options']['queue'])\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "SIMILARITY_QUEUE": "q-own", "SIMILARITY_TRAINING_QUEUE": "t-own"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["q-own", "q-own", "t-own"]
