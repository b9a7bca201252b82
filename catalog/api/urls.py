"""URL routes of the catalog API (mounted at /api/); any other path under it is a JSON 404."""
from django.urls import path, re_path
from rest_framework.routers import DefaultRouter

from similarity.api.clusters import ClusterViewSet

from .views import ImageSearchView, ProductViewSet, SearchView, not_found

router = DefaultRouter()
router.register("products", ProductViewSet, basename="product")
router.register("clusters", ClusterViewSet, basename="cluster")
urlpatterns = [
    path("search/", SearchView.as_view(), name="search"),
    path("search/image/", ImageSearchView.as_view(), name="search-image"),
    *router.urls,
    # Last: a path the routes above reject ("products/1.0/similar/", "nope/") answers JSON.
    # Only paths ending in a slash, so that APPEND_SLASH still redirects "products" there.
    re_path(r"^[\s\S]*/$", not_found, name="not-found"),  # [\s\S]: newlines too
]
