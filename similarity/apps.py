"""App config: register the host's models named in settings, set the scan settings of new
database connections, and register the system checks."""
from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _


class SimilarityConfig(AppConfig):
    name = "similarity"
    verbose_name = _("Similarity")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from similarity import checks  # noqa: F401  (registers system checks)
        from similarity.registry import extend_admin, register_from_settings, registered_models
        from similarity.search.scan import configure_connection

        connection_created.connect(configure_connection, dispatch_uid="similarity_scan_settings")
        register_from_settings()
        for model in registered_models():  # models registered before the admin was discovered
            extend_admin(model)
