"""Look at the app from inside a host project's process; print one JSON report on stdout.

Run by tests/hosts/harness.py as ``python -P probe.py CHECK...`` in a host's folder, with the
host's settings in DJANGO_SETTINGS_MODULE. Checks: ``origin`` (where ``similarity`` was
imported from), ``package`` (templates and translations found through the host's settings),
``admin`` (the admin login, index, a product's change and list pages and the app's own
admin lists through Django's test client; it writes a product to the host's database), ``worker NAME`` (the tasks a
running host worker registered), ``catalog`` (writes the catalogue of ``CATALOG`` the host's own
way, and a staff login; reports each product's key), ``change`` (a photo added, an Oscar
category added, a product deleted; the changed products' states, the deleted one's rows), ``states`` (where the encoding of the host's
products stands, from the app's EncodingState). ``python -P probe.py serve PORT`` serves
the host (its static files and media too) on 127.0.0.1:PORT until it is stopped.
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
    # The ModelAdmin the host (or Oscar) registered, extended in place by the app: its classes.
    model_admin = type(admin_site.site._registry[type(product)])
    report["model_admin_classes"] = [f"{cls.__module__}.{cls.__qualname__}" for cls in model_admin.__mro__]
    report["model_admin_inlines"] = [inline.__name__ for inline in model_admin.inlines]
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


# The catalogue the similarity tests write into each host: (key, title, maker, categories,
# photo colour or None, key of the product it is a variant of). Photos are solid colours: one
# category's photos fall in one bin of the fake colour encoder. "espresso" is the query item:
# "decaf" is designed to be its nearest (same words, maker, colour, category), "espresso-250"
# is its variant (nearer still, left out unless asked for) and "robusta" is nearer but not
# shown to shoppers. "sencha", "cream-mug" and "gunpowder" have no category: their look-alikes
# have one (the admin test applies its suggestion to "gunpowder"). "matcha" and "oolong" have
# no photo; the test of changes gives "oolong" one and deletes "chipped-mug".
BROWN, GREEN, WHITE = (110, 70, 40), (40, 160, 60), (235, 235, 235)
CATALOG = [
    ("espresso", "Espresso coffee beans 1 kg", "Hill Roastery", ["Drinks > Coffee"], BROWN, None),
    ("espresso-250", "Espresso coffee beans 250 g", "Hill Roastery", ["Drinks > Coffee"], BROWN, "espresso"),
    ("decaf", "Decaf espresso coffee beans 1 kg", "Hill Roastery", ["Drinks > Coffee"], BROWN, None),
    ("arabica", "Arabica filter coffee 500 g", "Valley Farms", ["Drinks > Coffee"], (120, 80, 50), None),
    ("robusta", "Espresso coffee beans robusta 1 kg", "Hill Roastery", ["Drinks > Coffee"], BROWN, None),
    ("longjing", "Longjing green tea 250 g", "West Lake", ["Drinks > Tea", "Gifts > Tea gifts"], GREEN, None),
    ("biluochun", "Biluochun green tea 100 g", "Lake Tai", ["Drinks > Tea"], (45, 165, 55), None),
    ("jasmine", "Jasmine green tea 200 g", "Fuzhou Tea", ["Drinks > Tea", "Gifts > Tea gifts"], (35, 150, 50), None),
    ("matcha", "Matcha green tea powder 50 g", "Uji", ["Drinks > Tea"], None, None),
    ("oolong", "Oolong tea 100 g", "Anxi", ["Drinks > Tea"], None, None),
    ("white-mug", "White ceramic mug 350 ml", "Kiln Works", ["Kitchen > Mugs"], WHITE, None),
    ("blue-mug", "Blue ceramic mug 350 ml", "Kiln Works", ["Kitchen > Mugs"], (40, 70, 200), None),
    ("grey-mug", "Grey ceramic mug 400 ml", "Kiln Works", ["Kitchen > Mugs"], (200, 200, 210), None),
    ("chipped-mug", "Chipped ceramic mug 350 ml", "Kiln Works", ["Kitchen > Mugs"], WHITE, None),
    ("sencha", "Sencha green tea 200 g", "Shizuoka", [], GREEN, None),
    ("cream-mug", "Cream ceramic mug 300 ml", "Kiln Works", [], (230, 225, 215), None),
    ("gunpowder", "Gunpowder green tea 250 g", "Pingshui", [], GREEN, None),
]
INACTIVE = {"robusta"}
STAFF = ("merch", "merch-password")


def catalog() -> dict[str, Any]:
    """Write ``CATALOG`` the host's way and a superuser ``STAFF``; return the products' keys."""
    from django.apps import apps
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    if not user_model.objects.filter(username=STAFF[0]).exists():
        user_model.objects.create_superuser(username=STAFF[0], email=f"{STAFF[0]}@example.com", password=STAFF[1])
    if apps.is_installed("store"):
        products = _store_catalog()
    elif apps.is_installed("oscar.apps.catalogue"):
        products = _oscar_catalog()
    else:
        raise RuntimeError("the probe knows no product model of this host: add one to catalog")
    first = next(iter(products.values()))
    return {"model": first._meta.label, "pks": {key: product.pk for key, product in products.items()}}


def _png(colour: tuple[int, int, int], name: str):
    from django.core.files.base import ContentFile
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name=f"{name}.png")


def _store_catalog() -> dict[str, Any]:
    """Items on shelves (a tree of labels; one shelf each), photos as ItemPhoto rows, variants by family."""
    from store.models import Item, ItemPhoto, Shelf

    def shelf(path: str) -> Shelf:
        node = None
        for label in path.split(" > "):
            node = Shelf.objects.get_or_create(label=label, parent=node)[0]
        return node

    items = {}
    for key, title, maker, categories, colour, variant_of in CATALOG:
        items[key] = Item.objects.create(
            code=f"HS-{key}", name=title, maker=maker, blurb=f"{title}, from {maker}.",
            shelf=shelf(categories[0]) if categories else None, listed=key not in INACTIVE,
            family=variant_of or (key if any(v == key for *_, v in CATALOG) else ""),
        )
        if colour:
            ItemPhoto.objects.create(item=items[key], picture=_png(colour, key), rank=0)
    return items


def _oscar_catalog() -> dict[str, Any]:
    """Oscar products: categories from breadcrumbs (many per product), photos as ProductImage
    rows, a variant as a child product (no title or category of its own) of a parent product."""
    from oscar.apps.catalogue.categories import create_from_breadcrumbs
    from oscar.apps.catalogue.models import Product, ProductCategory, ProductClass, ProductImage

    groceries = ProductClass.objects.get_or_create(name="Groceries")[0]
    parents = {variant_of for *_, variant_of in CATALOG if variant_of}
    products = {}
    for key, title, maker, categories, colour, variant_of in CATALOG:
        if variant_of:
            product = Product.objects.create(structure=Product.CHILD, parent=products[variant_of], title="", upc=f"HS-{key}")
        else:
            product = Product.objects.create(
                structure=Product.PARENT if key in parents else Product.STANDALONE, product_class=groceries,
                title=title, description=f"{title}, from {maker}.", upc=f"HS-{key}", is_public=key not in INACTIVE,
            )
            for path in categories:
                ProductCategory.objects.create(product=product, category=create_from_breadcrumbs(path))
        if colour:
            ProductImage.objects.create(product=product, original=_png(colour, key), display_order=0)
        products[key] = product
    return products


def change() -> dict[str, Any]:
    """Change products the ways a shop does after they were encoded: a photo added in the
    related table (to "oolong"), and in Oscar a category added through ``categories.add()``
    (to "grey-mug"); return the changed products' states right after the commit. Delete
    "chipped-mug" and count the app's rows left for it (its state and vectors go with it)."""
    from django.apps import apps
    from django.contrib.contenttypes.models import ContentType
    from django.db import transaction

    from similarity.models import Embedding, EncodingState, state_of
    from similarity.registry import registered_models

    (model,) = registered_models()
    chipped = model._default_manager.get(**{"code" if apps.is_installed("store") else "upc": "HS-chipped-mug"})
    content_type, deleted_pk = ContentType.objects.get_for_model(model), chipped.pk
    chipped.delete()
    left = {
        "states": EncodingState.objects.filter(content_type=content_type, object_id=deleted_pk).count(),
        "vectors": Embedding.objects.filter(content_type=content_type, object_id=deleted_pk).count(),
    }
    with transaction.atomic():
        if apps.is_installed("store"):
            from store.models import Item, ItemPhoto

            changed = [Item.objects.get(code="HS-oolong")]
            ItemPhoto.objects.create(item=changed[0], picture=_png((50, 140, 60), "oolong"), rank=0)
        else:
            from oscar.apps.catalogue.categories import create_from_breadcrumbs
            from oscar.apps.catalogue.models import Product, ProductImage

            changed = [Product.objects.get(upc="HS-oolong"), Product.objects.get(upc="HS-grey-mug")]
            ProductImage.objects.create(product=changed[0], original=_png((50, 140, 60), "oolong"), display_order=0)
            changed[1].categories.add(create_from_breadcrumbs("Tableware > Mugs"))
    return {"marked": {str(product.pk): state_of(product).status for product in changed}, "deleted_left": left}


def states() -> dict[str, Any]:
    """The registered model's products by encoding state, and the reasons of failed ones."""
    from similarity.models import EncodingState
    from similarity.registry import registered_models

    (model,) = registered_models()
    rows = EncodingState.objects.for_model(model)
    counts = {status: rows.filter(status=status).count() for status in ("pending", "ready", "failed")}
    return {
        "model": model._meta.label,
        "products": model._default_manager.count(),
        "by_status": counts,
        "modalities": dict(rows.values_list("object_id", "modalities")),
        "errors": dict(rows.filter(status="failed").values_list("object_id", "error")),
    }


def serve(port: str) -> None:
    """Serve the host on 127.0.0.1:``port`` with its static files and media (a browser's view)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import run
    from django.test.testcases import _MediaFilesHandler  # what LiveServerTestCase serves media with

    run("127.0.0.1", int(port), StaticFilesHandler(_MediaFilesHandler(WSGIHandler())), threading=True)


CHECKS = {
    "origin": origin, "package": package, "admin": admin, "worker": worker,
    "catalog": catalog, "change": change, "states": states,
}


def main(argv: list[str]) -> None:
    django.setup()
    if argv[:1] == ["serve"]:
        serve(argv[1])
        return
    report: dict[str, Any] = {}
    args = iter(argv)
    for check in args:
        report[check] = CHECKS[check](next(args)) if check == "worker" else CHECKS[check]()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
