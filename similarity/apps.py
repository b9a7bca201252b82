"""App config: connect the save signal of every Embeddable model, the scan settings of new
database connections, and register checks."""
from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_save
from django.utils.translation import gettext_lazy as _


class SimilarityConfig(AppConfig):
    name = "similarity"
    verbose_name = _("Similarity")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from similarity import checks  # noqa: F401  (registers system checks)
        from similarity.models import embeddable_models
        from similarity.search.scan import configure_connection
        from similarity.signal_handlers import schedule_encode_on_save

        connection_created.connect(configure_connection, dispatch_uid="similarity_scan_settings")
        for model in embeddable_models():
            post_save.connect(
                schedule_encode_on_save,
                sender=model,
                dispatch_uid=f"similarity_encode_{model._meta.label_lower}",
            )
