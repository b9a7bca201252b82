"""Look at the app from inside a host project's process; print one JSON report on stdout.

Run by tests/hosts/harness.py as ``python -P probe.py CHECK...`` in a host's folder, with the
host's settings in DJANGO_SETTINGS_MODULE. Checks: ``origin`` (where ``similarity`` was
imported from), ``package`` (templates and translations found through the host's settings),
``admin`` (the admin login, index, a product's change and list pages and the app's own
admin lists through Django's test client; it writes a product to the host's database) and ``worker NAME`` (the tasks a
running host worker registered).
"""
from __future__ import annotations

import importlib.util
import io
import json
import sys
from typing import Any

import django


def origin() -> dict[str, Any]:
    """Where ``similarity`` came from, and whether the repository is importable."""
    import similarity

    return {
        "similarity_file": similarity.__file__,
        "version": getattr(similarity, "__version__", None),
        # The repository's editable install adds a finder after the path finders: it must be
        # there (else this proves nothing) and lose to the wheel on PYTHONPATH.
        "editable_finder": any("__editable__" in type(f).__module__ or "__editable__" in getattr(f, "__module__", "") for f in sys.meta_path),
        "repository_modules": {name: importlib.util.find_spec(name) is not None for name in ("config", "catalog", "tests")},
        "sys_path": sys.path,
    }


def package() -> dict[str, Any]:
    """The app's templates and Simplified Chinese strings, as the host's settings find them."""
    from django.apps import apps
    from django.template.loader import get_template
    from django.utils import translation

    templates = {}
    for name in ("similarity/admin/similar_items.html", "similarity/admin/embeddable_change_list.html"):
        try:
            templates[name] = get_template(name).origin.name
        except Exception as exc:  # reported, not raised: the test says which one is missing
            templates[name] = f"{type(exc).__name__}: {exc}"
    with translation.override("zh-hans"):
        translated = {
            "Similarity": translation.gettext("Similarity"),
            "similar items": translation.gettext("similar items"),
            "app verbose_name": str(apps.get_app_config("similarity").verbose_name),
        }
    return {"templates": templates, "zh_hans": translated}


def admin() -> dict[str, Any]:
    """Status codes of admin pages for a staff user, and what the product change page shows."""
    from django.contrib import admin as admin_site
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    setup_test_environment()  # 'testserver' in ALLOWED_HOSTS, responses keep their context
    user_model = get_user_model()
    user = user_model.objects.filter(username="probe").first() or user_model.objects.create_superuser(
        username="probe", email="probe@example.com", password="probe-password"
    )
    product = _make_product()
    app_label, model_name = product._meta.app_label, product._meta.model_name
    anonymous = Client()
    staff = Client()
    staff.force_login(user)
    pages = {
        "login": anonymous.get(reverse("admin:login")),
        "index": staff.get(reverse("admin:index")),
        "changelist": staff.get(reverse(f"admin:{app_label}_{model_name}_changelist")),
        "change": staff.get(reverse(f"admin:{app_label}_{model_name}_change", args=[product.pk])),
    }
    # The app's own admin lists (model versions, clusters, suggestions, runs) in this host.
    for model in admin_site.site._registry:
        if model._meta.app_label == "similarity":
            pages[model._meta.label] = staff.get(reverse(f"admin:similarity_{model._meta.model_name}_changelist"))
    report: dict[str, Any] = {"product": product._meta.label, "status": {}, "errors": {}}
    for name, response in pages.items():
        report["status"][name] = response.status_code
        if response.status_code != 200:
            report["errors"][name] = response.content.decode(errors="replace")[:2000]
    report["change_page_mentions_product"] = str(product) in pages["change"].content.decode(errors="replace")
    return report


def worker(name: str) -> dict[str, Any]:
    """The tasks the host's worker ``name`` registered (asked over the broker)."""
    from celery import current_app

    replies = current_app.control.inspect([name], timeout=10).registered() or {}
    return {"registered": sorted(replies.get(name, [])), "answered": name in replies}


def _make_product():
    """One product of the host's own catalogue, filled the way that host's model is (shelves, photos...)."""
    from django.apps import apps

    if apps.is_installed("store"):
        return _make_store_item()
    if apps.is_installed("oscar.apps.catalogue"):
        return _make_oscar_product()
    raise RuntimeError("the probe knows no product model of this host: add one to _make_product")


def _make_store_item():
    from django.core.files.base import ContentFile
    from PIL import Image
    from store.models import Item, ItemPhoto, Shelf

    food = Shelf.objects.create(label="Food")
    tea = Shelf.objects.create(label="Tea", parent=food)
    item = Item.objects.create(code="T-100", name="Longjing green tea 250 g", blurb="Spring harvest.", maker="West Lake", shelf=tea, family="longjing")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 160, 60)).save(buffer, format="PNG")
    ItemPhoto.objects.create(item=item, picture=ContentFile(buffer.getvalue(), name="longjing.png"), rank=0)
    return item


def _make_oscar_product():
    from oscar.apps.catalogue.models import Category, Product, ProductCategory, ProductClass

    books = ProductClass.objects.create(name="Books")
    category = Category.add_root(name="Books")
    product = Product.objects.create(product_class=books, title="The Tea Classic", upc="978-0-00-000000-1")
    ProductCategory.objects.create(product=product, category=category)
    return product


CHECKS = {"origin": origin, "package": package, "admin": admin, "worker": worker}


def main(argv: list[str]) -> None:
    django.setup()
    report: dict[str, Any] = {}
    args = iter(argv)
    for check in args:
        report[check] = CHECKS[check](next(args)) if check == "worker" else CHECKS[check]()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
