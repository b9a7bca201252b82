"""Items for sale, the shelves (a tree) they stand on, and their photos."""
from __future__ import annotations

from django.db import models


class Shelf(models.Model):
    label = models.CharField(max_length=100)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")

    class Meta:
        verbose_name_plural = "shelves"

    def __str__(self) -> str:
        return f"{self.parent} / {self.label}" if self.parent_id else self.label


class Item(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    blurb = models.TextField(blank=True)
    maker = models.CharField(max_length=100, blank=True)
    shelf = models.ForeignKey(Shelf, null=True, blank=True, on_delete=models.SET_NULL, related_name="items")
    listed = models.BooleanField(default=True)
    family = models.CharField(max_length=32, blank=True, help_text="Items of one family are variants (size, colour).")

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class ItemPhoto(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="photos")
    picture = models.ImageField(upload_to="items/")
    rank = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["rank", "id"]
