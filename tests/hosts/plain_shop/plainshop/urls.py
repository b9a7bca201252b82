"""The plain shop's URLs: the admin, and the similar-items API under /api/."""
from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("similarity.urls")),
]
