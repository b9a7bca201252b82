"""Admin for items, shelves and photos."""
from __future__ import annotations

from django.contrib import admin

from .models import Item, ItemPhoto, Shelf


class ItemPhotoInline(admin.TabularInline):
    model = ItemPhoto
    extra = 1


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "maker", "shelf", "listed"]
    list_filter = ["listed", "shelf"]
    search_fields = ["code", "name", "maker", "family"]
    inlines = [ItemPhotoInline]


@admin.register(Shelf)
class ShelfAdmin(admin.ModelAdmin):
    list_display = ["label", "parent"]
