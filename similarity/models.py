"""The abstract ``Embeddable`` mixin (encoding state) and the bookkeeping models.

A concrete model (the shop's product) inherits ``Embeddable`` and says what it feeds the
encoders: ``get_embedding_text()`` and ``get_embedding_image()``. Its vectors live in
``Embedding`` rows, one per row and ``VectorSpace``: a space is one encoder configuration
(encoders, weights, dimensions, learned model). Queries read the active space only; a new
configuration is built as a second space in the background and takes over atomically (see
``similarity.indexing.spaces``). Dimensions are per space, so changing them needs no migration.
"""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from pgvector.django import VectorField


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    READY = "ready", _("ready")
    FAILED = "failed", _("failed")


class Modalities(models.TextChoices):
    IMAGE_TEXT = "image+text", _("image + text")
    TEXT = "text", _("text only (no image)")
    IMAGE = "image", _("image only (no text)")


class Embeddable(models.Model):
    """Encoding state and the link to the vectors; subclass it and implement the two getters.

    The primary key must be an integer (``Embedding.object_id``).
    """

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
    # SHA-256 of the encoded text and photo bytes: unchanged content is not encoded again.
    content_hash = models.CharField(_("content hash"), max_length=64, blank=True, editable=False)
    encoded_at = models.DateTimeField(_("encoded at"), null=True, blank=True, editable=False)
    # The encoding queue lives in these rows (see similarity.indexing.writer.claim_batch): a change
    # marks a row pending with a request time; a worker claims a batch with its task id.
    embedding_requested_at = models.DateTimeField(_("encoding requested"), null=True, blank=True, editable=False)
    embedding_claim = models.CharField(max_length=64, blank=True, editable=False)
    embedding_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)

    embeddings = GenericRelation("similarity.Embedding")

    class Meta:
        abstract = True

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

    def get_keyword_text(self) -> str:
        """Return the short text whose keywords explain a match (the title)."""
        return str(self)

    @classmethod
    def labelled(cls, queryset: models.QuerySet) -> models.QuerySet:
        """Return the rows of ``queryset`` that have a label (category suggestions vote)."""
        return queryset

    @classmethod
    def search_exact(cls, queryset: models.QuerySet, query: str) -> models.QuerySet:
        """Return rows whose identifier is exactly ``query`` (text search puts them first)."""
        return queryset.none()

    @classmethod
    def search_keywords(cls, queryset: models.QuerySet, tokens: list[str]) -> models.QuerySet:
        """Return rows whose title contains one of ``tokens`` (model numbers, units)."""
        return queryset.none()

    @classmethod
    def filter_label(cls, queryset: models.QuerySet, label: str) -> models.QuerySet:
        """Return the rows of ``queryset`` whose label is exactly ``label`` ("" = unlabelled)."""
        raise NotImplementedError(f"{cls.__name__} has no categories (implement filter_label)")

    @classmethod
    def set_label(cls, queryset: models.QuerySet, label: str) -> list[Any]:
        """Put the rows of ``queryset`` under category ``label``, creating it; return the changed pks.

        Called by accepted category suggestions, in their transaction; the caller re-encodes
        the changed rows.
        """
        raise NotImplementedError(f"{cls.__name__} has no categories (implement set_label)")

    def get_split_key(self) -> str:
        """Return the stable key of the held-out split (the sku for products)."""
        return str(self.pk)

    def embedding(self, space: VectorSpace | None = None) -> Embedding | None:
        """Return this row's vectors in ``space`` (default: the active space), or None."""
        space = space or VectorSpace.active_for(self._meta.label)
        if space is None or self.pk is None:
            return None
        return self.embeddings.filter(space=space).first()

    @classmethod
    def get_embedding_queryset(cls) -> models.QuerySet:
        """Return the queryset the worker loads rows from (override to add select_related)."""
        return cls._default_manager.all()

    @classmethod
    def get_clustering_queryset(cls) -> models.QuerySet:
        """Return the rows clustering looks at (override to leave out inactive items)."""
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
WORKER_FIELDS = frozenset(f.name for f in Embeddable._meta.local_fields if not f.primary_key)


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

    @property
    def image_weights(self) -> str | None:
        """The image network fine-tuned with this version (None: it uses the configured one)."""
        return ((self.metrics or {}).get("image_finetune") or {}).get("weights")

    @classmethod
    def active_for(cls, model_label: str) -> ModelVersion | None:
        return cls.objects.filter(model_label=model_label, is_active=True).first()


class SpaceState(models.TextChoices):
    BUILDING = "building", _("building")
    ACTIVE = "active", _("active")
    RETIRED = "retired", _("retired")


class VectorSpace(models.Model):
    """One encoder configuration of one Embeddable model, and its place in the switch-over.

    ``spec`` holds what builds the encoders (dotted paths, weight files, dimensions, fusion
    weights, learned model); ``key`` is its fingerprint. At most one space per model is
    active (queries read it) and at most one is building (the worker fills it beside the
    active one and it takes over once ``coverage_threshold`` of the rows have vectors).
    """

    model_label = models.CharField(_("model"), max_length=100)
    key = models.CharField(_("configuration"), max_length=40)
    spec = models.JSONField(_("encoders"))
    state = models.CharField(_("state"), max_length=16, choices=SpaceState.choices, default=SpaceState.BUILDING)
    coverage_threshold = models.FloatField(_("switch over at coverage"), default=1.0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    activated_at = models.DateTimeField(_("activated"), null=True, blank=True)
    retired_at = models.DateTimeField(_("retired"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("vector space")
        verbose_name_plural = _("vector spaces")
        constraints = [
            models.UniqueConstraint(
                fields=["model_label"], condition=models.Q(state="active"), name="similarity_one_active_space"
            ),
            models.UniqueConstraint(
                fields=["model_label"], condition=models.Q(state="building"), name="similarity_one_building_space"
            ),
        ]

    def __str__(self) -> str:
        learned = self.spec.get("learned") or "fixed fusion"
        return f"{self.model_label} {self.key} ({learned}, {self.get_state_display()})"

    @property
    def dims(self) -> dict[str, int]:
        """Dimensions per vector column; "learned" only with a learned model."""
        spec = self.spec
        dims = {"image": spec["image_dim"], "text": spec["text_dim"], "fused": spec["image_dim"] + spec["text_dim"]}
        if spec.get("learned"):
            dims["learned"] = spec["learned_dim"]
        return dims

    @classmethod
    def active_for(cls, model_label: str) -> VectorSpace | None:
        return cls.objects.filter(model_label=model_label, state=SpaceState.ACTIVE).first()


class EmbeddingQuerySet(models.QuerySet):
    def for_model(self, model: type, space: VectorSpace | None = None) -> EmbeddingQuerySet:
        """The vectors of ``model``'s rows (an Embeddable class or instance), in ``space`` if given."""
        vectors = self.filter(content_type=ContentType.objects.get_for_model(model))
        return vectors if space is None else vectors.filter(space=space)


class Embedding(models.Model):
    """The vectors of one row of an Embeddable model in one vector space.

    The vector columns have no fixed size: each space gets partial HNSW indexes on
    ``(column::vector(n)) WHERE space_id = <id>`` when it is created (``similarity.indexing.spaces``).
    """

    space = models.ForeignKey(VectorSpace, on_delete=models.CASCADE, related_name="embeddings")
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.BigIntegerField()
    content_object = GenericForeignKey("content_type", "object_id")
    image = VectorField(null=True)
    text = VectorField(null=True)
    fused = VectorField(null=True)
    learned = VectorField(null=True)
    attention = models.JSONField(_("attention weights"), null=True, blank=True)
    content_hash = models.CharField(max_length=64)
    encoded_at = models.DateTimeField()

    objects = EmbeddingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["space", "content_type", "object_id"], name="similarity_one_embedding_per_space")
        ]
        indexes = [models.Index(fields=["content_type", "object_id"], name="similarity_embedding_object")]

    def __str__(self) -> str:
        return f"{self.content_type_id}:{self.object_id} in space {self.space_id}"


class Decision(models.TextChoices):
    OPEN = "open", _("open")
    ACCEPTED = "accepted", _("accepted")
    REJECTED = "rejected", _("rejected")


class ClusterRun(models.Model):
    """One clustering of a model's active vectors: how k was chosen and how long it took."""

    model_label = models.CharField(_("model"), max_length=100)
    space = models.ForeignKey(VectorSpace, verbose_name=_("vector space"), null=True, on_delete=models.SET_NULL)
    column = models.CharField(_("vectors"), max_length=16)
    products = models.PositiveIntegerField(_("items clustered"), default=0)
    k = models.PositiveIntegerField(_("clusters"), default=0)
    criterion = models.CharField(_("k chosen by"), max_length=100, blank=True)
    scores = models.JSONField(_("score per k"), default=dict)
    seconds = models.JSONField(_("seconds per step"), default=dict)
    started_at = models.DateTimeField(_("started"), auto_now_add=True)

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"
        verbose_name = _("clustering run")
        verbose_name_plural = _("clustering runs")

    def __str__(self) -> str:
        return f"{self.model_label} {self.started_at:%Y-%m-%d %H:%M} (k={self.k})"


class CategoryCluster(models.Model):
    """A group of similar items found by clustering, named after its distinctive keywords."""

    run = models.ForeignKey(ClusterRun, verbose_name=_("run"), on_delete=models.CASCADE, related_name="clusters")
    model_label = models.CharField(_("model"), max_length=100)
    number = models.PositiveIntegerField(_("number"))
    name = models.CharField(_("name"), max_length=200)
    keywords = models.JSONField(_("keywords"), default=list)
    size = models.PositiveIntegerField(_("size"))
    labelled = models.PositiveIntegerField(_("categorised members"))
    purity = models.FloatField(_("purity"), help_text=_("share of the categorised members in the majority category"))
    majority_label = models.CharField(_("majority category"), max_length=1000, blank=True)
    label_counts = models.JSONField(_("members per category"), default=dict)

    class Meta:
        ordering = ["-run__started_at", "-size", "number"]
        verbose_name = _("category cluster")
        verbose_name_plural = _("category clusters")

    def __str__(self) -> str:
        return self.name


class ClusterMember(models.Model):
    """An item of a cluster, with its cosine distance to the cluster's centre."""

    cluster = models.ForeignKey(CategoryCluster, on_delete=models.CASCADE, related_name="members")
    object_id = models.BigIntegerField()
    distance = models.FloatField(_("distance to centre"))
    label = models.CharField(_("category when clustered"), max_length=1000, blank=True)

    class Meta:
        ordering = ["distance", "object_id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "object_id"], name="similarity_one_membership")]


def sample_members(count: int) -> models.QuerySet:
    """A queryset for ``Prefetch("members", ...)``: each cluster's ``count`` members nearest its centre."""
    return ClusterMember.objects.order_by("distance", "object_id")[:count]


class SuggestionKind(models.TextChoices):
    ASSIGN = "assign", _("assign uncategorised items")
    MOVE = "move", _("move items to another category")
    CREATE = "create", _("create a new category")


class CategorySuggestion(models.Model):
    """A change of category for some items that a merchandiser accepts or rejects.

    From a cluster (``cluster`` set) or from the neighbour vote of selected items (no cluster).
    ``object_ids`` are the items it would change; a decided suggestion is never replaced.
    """

    model_label = models.CharField(_("model"), max_length=100)
    cluster = models.ForeignKey(
        CategoryCluster, verbose_name=_("cluster"), null=True, blank=True, on_delete=models.CASCADE, related_name="suggestions"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=SuggestionKind.choices)
    source_label = models.CharField(_("from category"), max_length=1000, blank=True)
    target_label = models.CharField(_("to category"), max_length=1000)
    name = models.CharField(_("new category name"), max_length=200, blank=True)
    parent_label = models.CharField(_("under"), max_length=1000, blank=True)
    object_ids = models.JSONField(_("items"), default=list)
    size = models.PositiveIntegerField(_("items"))
    confidence = models.FloatField(_("confidence"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Decision.choices, default=Decision.OPEN, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("decided by"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    applied_label = models.CharField(_("category applied"), max_length=1000, blank=True)
    changed = models.PositiveIntegerField(_("items changed"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["status", "-size", "pk"]
        verbose_name = _("category suggestion")
        verbose_name_plural = _("category suggestions")

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """Return the suggestion as a sentence a merchandiser reads (translated)."""
        items = ngettext("%(n)d item", "%(n)d items", self.size) % {"n": self.size}
        if self.kind == SuggestionKind.CREATE:
            where = self.parent_label or gettext("the top level")
            return gettext('Create new category "%(name)s" under %(where)s for %(items)s') % {
                "name": self.name, "where": where, "items": items}
        if self.kind == SuggestionKind.MOVE:
            return gettext('Move %(items)s from "%(source)s" to "%(target)s"') % {
                "items": items, "source": self.source_label, "target": self.target_label}
        return gettext('Assign %(items)s without category to "%(target)s"') % {
            "items": items, "target": self.target_label}
