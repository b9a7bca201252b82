"""Three shapes of item the adapter strategies cover, none of them the demo's ``Product``.

- ``Gadget``: photos in a related table (``GadgetPhoto``, first by ``rank``), a foreign key to
  a ``Shelf`` tree (``label`` + ``parent``), a ``listed`` flag and a ``family`` value for variants.
- ``Book``: categories as a many-to-many to a ``Genre`` tree (parent field ``broader``),
  editions as a foreign key to a parent book.
- ``Listing``: the category path in a text field ("Garden/Hand Tools") and one photo on the row.

Registered through ``tests.settings`` (``SIMILARITY["MODELS"]``) with the adapters in
``tests.testapp.adapters``; the models have no similarity column.
"""
from __future__ import annotations

from django.db import models


class Shelf(models.Model):
    label = models.CharField(max_length=120)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")

    class Meta:
        verbose_name_plural = "shelves"

    def __str__(self) -> str:
        return f"{self.parent} / {self.label}" if self.parent_id else self.label


class Gadget(models.Model):
    code = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=300)
    notes = models.TextField(blank=True)
    maker = models.CharField(max_length=120, blank=True)
    shelf = models.ForeignKey(Shelf, null=True, blank=True, on_delete=models.SET_NULL, related_name="gadgets")
    listed = models.BooleanField(default=True)
    family = models.CharField(max_length=60, blank=True, help_text="Gadgets of one family are variants of one.")
    stock = models.PositiveIntegerField(default=0)  # not part of what is encoded
    changed = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class GadgetPhoto(models.Model):
    gadget = models.ForeignKey(Gadget, on_delete=models.CASCADE, related_name="photos")
    picture = models.ImageField(upload_to="gadgets/", max_length=300)
    rank = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return self.picture.name


class Genre(models.Model):
    name = models.CharField(max_length=120)
    broader = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="narrower")

    def __str__(self) -> str:
        return self.name


class Book(models.Model):
    isbn = models.CharField(max_length=20, unique=True)
    heading = models.CharField(max_length=300)
    blurb = models.TextField(blank=True)
    genres = models.ManyToManyField(Genre, blank=True, related_name="books")
    edition_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="editions")
    in_print = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.heading


class Listing(models.Model):
    caption = models.CharField(max_length=300)
    details = models.TextField(blank=True)
    section = models.CharField(max_length=500, blank=True, help_text='Its category path, levels split by "/".')
    photo = models.ImageField(upload_to="listings/", max_length=300, blank=True)

    def __str__(self) -> str:
        return self.caption
