"""The app's API, mounted by the host with one line: ``path("api/", include("similarity.urls"))``.

For each registered model, under its adapter's route (``products``):

- ``products/``, ``products/{id}/``: the list (paginated, filtered) and one item;
- ``products/{id}/similar/``, ``products/{id}/category-suggestions/``;
- ``products/search/?q=`` and ``products/search/image/`` (POST a photo);

the first registered model's searches also at ``search/`` and ``search/image/``; the staff
API of discovered clusters at ``clusters/``. Any other path under the mount answers a JSON
404. The OpenAPI schema of these views is drf-spectacular's (``SpectacularAPIView``).
"""
from __future__ import annotations

from typing import Any

from django.urls import path, re_path
from rest_framework.routers import APIRootView, DefaultRouter

from similarity.api.clusters import ClusterViewSet
from similarity.api.views import not_found, views_for
from similarity.registry import adapters

app_name = "similarity"


class RootView(APIRootView):
    """The API's index page, rendered as the app's own views are (JSON without "rest_framework")."""

    def get_renderers(self) -> list[Any]:
        from similarity.api.views import api_renderers

        return [renderer() for renderer in api_renderers()]


class Router(DefaultRouter):
    APIRootView = RootView


def _urlpatterns() -> list:
    router = Router()
    searches = []
    for index, adapter in enumerate(adapters()):
        route, views, name = adapter.get_route(), views_for(adapter), adapter.model._meta.model_name
        searches += [
            path(f"{route}/search/", views["search"].as_view(), name=f"{name}-search"),
            path(f"{route}/search/image/", views["image_search"].as_view(), name=f"{name}-search-image"),
        ]
        if index == 0:
            searches += [
                path("search/", views["search"].as_view(), name="search"),
                path("search/image/", views["image_search"].as_view(), name="search-image"),
            ]
        router.register(route, views["viewset"], basename=name)
    router.register("clusters", ClusterViewSet, basename="cluster")
    return [
        *searches,
        *router.urls,
        # Last: a path the routes above reject ("products/1.0/similar/", "nope/") answers JSON.
        # Only paths ending in a slash, so that APPEND_SLASH still redirects "products" there.
        re_path(r"^[\s\S]*/$", not_found, name="not-found"),  # [\s\S]: newlines too
    ]


urlpatterns = _urlpatterns()
