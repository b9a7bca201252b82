"""App config: re-encode a product when its photos change."""
from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = _("Catalog")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .models import ProductImage
        from .signal_handlers import schedule_product_encode

        for signal in (post_save, post_delete):
            signal.connect(schedule_product_encode, sender=ProductImage, dispatch_uid=f"catalog_image_{signal}")
