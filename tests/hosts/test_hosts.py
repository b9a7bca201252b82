"""The app as other shops get it: its wheel, installed into shop projects that are not the demo.

Each host (tests/hosts/<shop>/) runs in its own processes with the wheel's ``similarity``
first on the path and nothing of this repository importable; see tests/hosts/README.md.
"""
from __future__ import annotations

import email
import re
import zipfile
from pathlib import Path

import pytest

from tests.hosts.harness import REPO, Host, unique_queue

pytestmark = pytest.mark.hosts

SOURCE = REPO / "similarity"


def _source_version() -> str:
    return re.search(r'^__version__ = "(.+)"$', (SOURCE / "__init__.py").read_text(), re.M).group(1)


def _source_files(pattern: str) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in SOURCE.glob(pattern) if "__pycache__" not in p.parts}


@pytest.fixture(scope="session")
def wheel_names(similarity_wheel: Path) -> set[str]:
    with zipfile.ZipFile(similarity_wheel) as wheel:
        return set(wheel.namelist())


@pytest.fixture(scope="session")
def inside(host: Host) -> dict:
    """What the host's own process says about the app it imported."""
    return host.probe("origin", "package")


def test_wheel_holds_the_templates_translations_and_text_resources(wheel_names: set[str]) -> None:
    for kind, pattern in [
        ("template", "templates/**/*.html"),
        ("translation", "locale/*/LC_MESSAGES/django.po"),
        ("compiled translation", "locale/*/LC_MESSAGES/django.mo"),
        ("text resource", "**/resources/*.txt"),
    ]:
        expected = _source_files(pattern)
        assert expected, f"no {kind} in the source tree ({pattern}): the layout changed, update this test"
        assert expected <= wheel_names, f"{kind}s missing from the wheel: {sorted(expected - wheel_names)}"


def _dist_info(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


def test_wheel_holds_every_module_and_nothing_of_the_demo(similarity_wheel: Path, wheel_names: set[str]) -> None:
    modules = _source_files("**/*.py")
    missing = sorted(modules - wheel_names)
    assert not missing, f"modules missing from the wheel (a package folder without __init__.py?): {missing}"
    tops = {name.split("/", 1)[0] for name in wheel_names}
    assert tops == {"similarity", _dist_info(similarity_wheel)}, tops


def test_wheel_metadata_keeps_pytorch_off_the_web_install(similarity_wheel: Path) -> None:
    with zipfile.ZipFile(similarity_wheel) as wheel:
        metadata = email.message_from_string(wheel.read(f"{_dist_info(similarity_wheel)}/METADATA").decode())
    assert metadata["Name"] == "django-product-similarity"
    assert metadata["Version"] == _source_version()
    assert metadata["License-Expression"] == "MIT"
    requires = metadata.get_all("Requires-Dist")
    web = [r for r in requires if "extra ==" not in r]
    worker = [r for r in requires if 'extra == "worker"' in r]
    assert not any(r.startswith(("torch", "scikit-learn", "networkx")) for r in web), web
    assert {r.split(">=")[0].split(";")[0].strip() for r in worker} >= {"torch", "torchvision", "scikit-learn"}


def test_migrates_from_scratch(host: Host) -> None:
    assert host.migration.returncode == 0, host.migration.stderr[-6000:]
    # Every migration applied, and none missing for the models (the wheel's app's included).
    unapplied = host.manage("migrate", "--check")
    assert unapplied.returncode == 0, unapplied.stdout + unapplied.stderr
    missing = host.manage("makemigrations", "--check", "--dry-run")
    assert missing.returncode == 0, missing.stdout + missing.stderr


def test_system_checks_pass(host: Host) -> None:
    result = host.manage("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_similarity_is_imported_from_the_wheel(host: Host, inside: dict, wheel_site: Path) -> None:
    origin = inside["origin"]
    assert Path(origin["similarity_file"]).is_relative_to(wheel_site), origin["similarity_file"]
    assert origin["version"] == _source_version()
    # The repository's editable install was reachable, and lost.
    assert origin["editable_finder"], "no editable finder in the host process: this test proves nothing"
    assert origin["repository_modules"] == {"config": False, "catalog": False, "tests": False}
    assert str(REPO) not in origin["sys_path"] and "" not in origin["sys_path"]


def test_templates_and_translations_come_from_the_wheel(inside: dict, wheel_site: Path) -> None:
    for name, found in inside["package"]["templates"].items():
        assert Path(found).is_relative_to(wheel_site), f"{name}: {found}"
    assert inside["package"]["zh_hans"] == {
        "Similarity": "相似度",
        "similar items": "相似商品",
        "app verbose_name": "相似度",
    }


def test_admin_serves_login_product_and_similarity_pages(migrated: Host) -> None:
    report = migrated.probe("admin")["admin"]
    assert report["product"] == migrated.product_model
    assert {"login", "index", "changelist", "change", "similarity.ModelVersion"} <= set(report["status"])
    assert set(report["status"].values()) == {200}, report["errors"]
    assert report["change_page_mentions_product"]


@pytest.mark.worker
def test_worker_starts_with_the_apps_tasks(migrated: Host, redis_broker: str, tmp_path: Path) -> None:
    queue = unique_queue(migrated, "encode")
    name = f"{queue}@hosts"
    migrated.start_worker([queue], tmp_path / "worker.log", name=name)
    try:
        report = migrated.probe("worker", name)["worker"]
    finally:
        migrated.stop_workers()
    assert report["answered"], (tmp_path / "worker.log").read_text()[-3000:]
    assert {"similarity.encode", "similarity.encode_query", "similarity.sweep"} <= set(report["registered"])
