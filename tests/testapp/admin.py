"""A plain ModelAdmin: the app extends it with its panels (``SIMILARITY["ADMIN"]``)."""
from __future__ import annotations

from django.contrib import admin

from .models import Gadget


@admin.register(Gadget)
class GadgetAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "maker", "listed")
    search_fields = ("code", "name")
