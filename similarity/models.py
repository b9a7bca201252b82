"""The abstract ``Embeddable`` mixin: vector columns, HNSW indexes and encoding bookkeeping.

A concrete model (the shop's product) inherits it and says what it feeds the encoders:
``get_embedding_text()`` and ``get_embedding_image()``. Column sizes come from the
``SIMILARITY`` settings when the model class is created.
"""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models
from django.utils.translation import gettext_lazy as _
from pgvector.django import HnswIndex, VectorField

from .conf import similarity_settings


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    READY = "ready", _("ready")
    FAILED = "failed", _("failed")


class Modalities(models.TextChoices):
    IMAGE_TEXT = "image+text", _("image + text")
    TEXT = "text", _("text only (no image)")
    IMAGE = "image", _("image only (no text)")


def _hnsw(field: str) -> HnswIndex:
    return HnswIndex(
        name=f"%(app_label)s_%(class)s_{field.split('_')[0]}_hnsw",
        fields=[field],
        opclasses=["vector_cosine_ops"],
        m=16,
        ef_construction=64,
    )


class Embeddable(models.Model):
    """Vector columns and encoding state; subclass it and implement the two getters."""

    image_embedding = VectorField(dimensions=similarity_settings.IMAGE_DIM, null=True, editable=False)
    text_embedding = VectorField(dimensions=similarity_settings.TEXT_DIM, null=True, editable=False)
    fused_embedding = VectorField(dimensions=similarity_settings.fused_dim, null=True, editable=False)
    embedding_status = models.CharField(
        _("embedding status"),
        max_length=16,
        choices=EmbeddingStatus.choices,
        default=EmbeddingStatus.PENDING,
        db_index=True,
        editable=False,
    )
    embedding_error = models.TextField(_("embedding error"), blank=True, editable=False)
    embedding_modalities = models.CharField(
        _("encoded from"), max_length=16, choices=Modalities.choices, blank=True, editable=False
    )
    encoder_version = models.CharField(_("encoder version"), max_length=200, blank=True, editable=False)
    content_hash = models.CharField(_("content hash"), max_length=64, blank=True, editable=False)
    encoded_at = models.DateTimeField(_("encoded at"), null=True, blank=True, editable=False)
    # Output of the active learned fusion model (see ModelVersion), tagged with its version.
    learned_embedding = VectorField(dimensions=similarity_settings.LEARNED_DIM, null=True, editable=False)
    learned_version = models.CharField(_("learned model"), max_length=100, blank=True, db_index=True, editable=False)
    attention_weights = models.JSONField(_("attention weights"), null=True, blank=True, editable=False)
    # The encoding queue lives in these rows (see similarity.index.claim_batch): a change
    # marks a row pending with a request time; a worker claims a batch with its task id.
    embedding_requested_at = models.DateTimeField(_("encoding requested"), null=True, blank=True, editable=False)
    embedding_claim = models.CharField(max_length=64, blank=True, editable=False)
    embedding_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True
        indexes = [
            _hnsw("image_embedding"),
            _hnsw("text_embedding"),
            _hnsw("fused_embedding"),
            _hnsw("learned_embedding"),
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save the row; an update never writes the worker's columns (vectors, status, queue).

        A form loaded before the worker finished must not put stale vectors back.
        """
        if not self._state.adding and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name not in WORKER_FIELDS
            ]
        super().save(*args, **kwargs)

    def get_embedding_text(self) -> str:
        """Return the text to encode (title, brand, category, description...)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_embedding_text()")

    def get_embedding_image(self) -> Any:
        """Return the image to encode as a Django ``File`` (e.g. a FieldFile), or None."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_embedding_image()")

    def get_learning_text(self) -> str:
        """Return the text the learned model reads; it must not contain the category label."""
        return self.get_embedding_text()

    def get_similarity_label(self) -> str:
        """Return the category path used as training label ("A > B > C"), "" if unlabelled."""
        return ""

    def get_split_key(self) -> str:
        """Return the stable key of the held-out split (the sku for products)."""
        return str(self.pk)

    @classmethod
    def get_embedding_queryset(cls) -> models.QuerySet:
        """Return the queryset the worker loads rows from (override to add select_related)."""
        return cls._default_manager.all()

    @classmethod
    def filter_category(cls, queryset: models.QuerySet, path: str) -> models.QuerySet:
        """Return the rows of ``queryset`` in category ``path`` and below (for reindexing)."""
        raise NotImplementedError(f"{cls.__name__} has no categories to filter by (implement filter_category)")

    @classmethod
    def filter_changed_since(cls, queryset: models.QuerySet, when: Any) -> models.QuerySet:
        """Return the rows of ``queryset`` changed at or after ``when`` (for reindexing)."""
        raise NotImplementedError(f"{cls.__name__} does not record changes (implement filter_changed_since)")


# Columns only the encoding pipeline writes.
WORKER_FIELDS = frozenset(
    f.name for f in Embeddable._meta.local_fields if not f.primary_key
)


def embeddable_models() -> list[type[Embeddable]]:
    """Return every installed concrete model that mixes in ``Embeddable``."""
    return [m for m in apps.get_models() if issubclass(m, Embeddable)]


class ModelVersion(models.Model):
    """A trained fusion model: where its checkpoint lives, how it scored, whether it is active."""

    name = models.CharField(_("version"), max_length=100, unique=True)
    model_label = models.CharField(_("trained on"), max_length=100)
    path = models.CharField(_("checkpoint folder"), max_length=500)
    dim = models.PositiveIntegerField(_("dimensions"))
    label_level = models.PositiveSmallIntegerField(_("category level"))
    metrics = models.JSONField(_("held-out metrics"), default=dict)
    baseline_metrics = models.JSONField(_("metrics of the model it had to beat"), default=dict)
    is_active = models.BooleanField(_("active"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    activated_at = models.DateTimeField(_("activated"), null=True, blank=True)
    notes = models.TextField(_("notes"), blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("model version")
        verbose_name_plural = _("model versions")
        constraints = [
            models.UniqueConstraint(
                fields=["model_label"], condition=models.Q(is_active=True), name="similarity_one_active_version"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def headline(self) -> float | None:
        """Held-out P@10 at the training level (the number activation compares)."""
        return (self.metrics or {}).get("p@10")

    @classmethod
    def active_for(cls, model_label: str) -> ModelVersion | None:
        return cls.objects.filter(model_label=model_label, is_active=True).first()
