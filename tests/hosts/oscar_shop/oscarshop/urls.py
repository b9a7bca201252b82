"""Oscar's storefront and dashboard at the root, Django's admin at /admin/, similar items at /api/."""
from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/", include("similarity.urls")),
    path("", include(apps.get_app_config("oscar").urls[0])),
]
