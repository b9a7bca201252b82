"""URL routes of the catalog API (mounted at /api/)."""
from django.urls import path
from rest_framework.routers import DefaultRouter

from similarity.api.clusters import ClusterViewSet

from .views import ImageSearchView, ProductViewSet, SearchView

router = DefaultRouter()
router.register("products", ProductViewSet, basename="product")
router.register("clusters", ClusterViewSet, basename="cluster")
urlpatterns = [
    path("search/", SearchView.as_view(), name="search"),
    path("search/image/", ImageSearchView.as_view(), name="search-image"),
    *router.urls,
]
