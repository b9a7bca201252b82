"""Root URLs: admin at /admin/, the demo storefront at /shop/, API at /api/ (OpenAPI schema at /api/schema/, Swagger UI at
/api/docs/, ReDoc at /api/redoc/), media in development and the demo."""
from __future__ import annotations

from pathlib import PurePosixPath

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponseBase
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from catalog.views import shop

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("shop/", shop, name="shop"),  # a storefront page with the recommendations widget
    # Before the API include, so the router never sees these paths.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/", include("similarity.urls")),
]

# Media holds files that came from outside (imported and uploaded photos): a browser must
# never read one as a page of this origin, whatever its bytes or name.
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif"}


def serve_media(request: HttpRequest, path: str, document_root: str) -> HttpResponseBase:
    """Serve a file of MEDIA_ROOT: photos as their image type, anything else as a download."""
    response = serve(request, path, document_root=document_root)
    if response.status_code == 200:  # not a 304, which has no body
        content_type = MEDIA_TYPES.get(PurePosixPath(path).suffix.lower())
        if content_type:
            response["Content-Type"] = content_type
        else:
            response["Content-Type"] = "application/octet-stream"
            response["Content-Disposition"] = "attachment"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    return response


if settings.SERVE_MEDIA:
    prefix = settings.MEDIA_URL.lstrip("/")
    urlpatterns += [re_path(rf"^{prefix}(?P<path>.*)$", serve_media, {"document_root": settings.MEDIA_ROOT})]
