"""The tables the app owns: encoding state, vector spaces, vectors, versions, clusters.

A host registers its own model (``similarity.registry``); the model gets no column. Its
items' encoding state lives in ``EncodingState`` rows and their vectors in ``Embedding``
rows, one per item and ``VectorSpace``: a space is one encoder configuration
(encoders, weights, dimensions, learned model). Queries read the active space only; a new
configuration is built as a second space in the background and takes over atomically (see
``similarity.indexing.spaces``). Dimensions are per space, so changing them needs no migration.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from pgvector.django import HalfVectorField, SparseVectorField, VectorField

#: pgvector's own HNSW build options: those of a space whose spec names none (created before
#: ``SIMILARITY["HNSW_BUILD"]``, or with these).
PGVECTOR_HNSW_BUILD = {"m": 16, "ef_construction": 64}


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    READY = "ready", _("ready")
    FAILED = "failed", _("failed")


class Modalities(models.TextChoices):
    IMAGE_TEXT = "image+text", _("image + text")
    TEXT = "text", _("text only (no image)")
    IMAGE = "image", _("image only (no text)")


class StateQuerySet(models.QuerySet):
    def for_model(self, model: Any) -> StateQuerySet:
        """The states of ``model``'s items (a registered class, instance or label).

        By the content type's natural key (a join), not its cached id: long-lived workers see
        content types re-created under them (a flush, a restore).
        """
        if isinstance(model, str):
            from django.apps import apps

            model = apps.get_model(model)
        meta = model._meta
        return self.filter(content_type__app_label=meta.app_label, content_type__model=meta.model_name)


class EncodingState(models.Model):
    """Where one item of a registered model stands with the encoder: the app's own row.

    The host's table gets no column: status, reason, content hash and the claim of the
    worker encoding it live here (one row per item, created when it is first scheduled).
    The encoding queue is these rows (see ``similarity.indexing.claims``): a change marks
    the row pending with a request time; a worker claims a batch with its task id.
    """

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.BigIntegerField()
    status = models.CharField(
        _("embedding status"), max_length=16, choices=EmbeddingStatus.choices, default=EmbeddingStatus.PENDING
    )
    error = models.TextField(_("embedding error"), blank=True)
    modalities = models.CharField(_("encoded from"), max_length=16, choices=Modalities.choices, blank=True)
    # SHA-256 of the encoded text and photo bytes: unchanged content is not encoded again.
    content_hash = models.CharField(_("content hash"), max_length=64, blank=True)
    encoded_at = models.DateTimeField(_("encoded at"), null=True, blank=True)
    requested_at = models.DateTimeField(_("encoding requested"), null=True, blank=True)
    claim = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)

    item = GenericForeignKey("content_type", "object_id")

    objects = StateQuerySet.as_manager()

    class Meta:
        verbose_name = _("encoding state")
        verbose_name_plural = _("encoding states")
        constraints = [
            models.UniqueConstraint(fields=["content_type", "object_id"], name="similarity_one_state_per_item"),
        ]
        indexes = [
            # The queue: pending rows of a model, oldest request first.
            models.Index(fields=["content_type", "status", "requested_at"], name="similarity_state_queue"),
        ]

    def __str__(self) -> str:
        return f"{self.content_type_id}:{self.object_id} {self.status}"


def state_of(obj: Any) -> EncodingState | None:
    """The encoding state of a registered item (read from prefetched ``similarity_states``
    when the queryset fetched them), or None while it was never scheduled."""
    cache = getattr(obj, "_prefetched_objects_cache", {})
    if "similarity_states" in cache:
        states = list(cache["similarity_states"])
        return states[0] if states else None
    return EncodingState.objects.for_model(obj).filter(object_id=obj.pk).first()


def embedding_of(obj: Any, space: VectorSpace | None = None) -> Embedding | None:
    """The vectors of a registered item in ``space`` (default: its model's active space)."""
    space = space or VectorSpace.active_for(obj._meta.label)
    if space is None or obj.pk is None:
        return None
    return Embedding.objects.for_model(obj, space).filter(object_id=obj.pk).first()


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
    """One encoder configuration of one registered model, and its place in the switch-over.

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

    @property
    def hnsw_build(self) -> dict[str, int]:
        """pgvector's build options of the space's HNSW indexes (``HNSW_BUILD`` when it was created)."""
        return self.spec.get("hnsw", PGVECTOR_HNSW_BUILD)

    @property
    def half_precision(self) -> bool:
        """Whether the HNSW indexes hold the vectors as ``halfvec`` (16-bit: half the memory)."""
        return self.spec.get("index_precision") == "half"

    def indexed_field(self, column: str) -> models.Field:
        """The type the column is cast to in its HNSW index (and so in every query the index answers)."""
        field = HalfVectorField if self.half_precision else VectorField
        return field(dimensions=self.dims[column])

    @classmethod
    def active_for(cls, model_label: str) -> VectorSpace | None:
        return cls.objects.filter(model_label=model_label, state=SpaceState.ACTIVE).first()


class EmbeddingQuerySet(models.QuerySet):
    def for_model(self, model: type, space: VectorSpace | None = None) -> EmbeddingQuerySet:
        """The vectors of ``model``'s rows (a registered class or instance), in ``space`` if given."""
        vectors = self.filter(content_type=ContentType.objects.get_for_model(model))
        return vectors if space is None else vectors.filter(space=space)


class Embedding(models.Model):
    """The vectors of one item of a registered model in one vector space.

    The vector columns have no fixed size: each space gets partial HNSW indexes on
    ``(column::vector(n)) WHERE space_id = <id>`` (``halfvec(n)`` with ``INDEX_PRECISION`` "half")
    when it is created (``similarity.indexing.spaces``).
    ``lexical`` is the text's BM25 term weights over hashed tokens (``similarity.ml.lexical``;
    indexed as ``sparsevec`` with inner product), ``lexical_length`` the number of terms it
    counted (what the space's ``DocumentFrequency`` totals add up).
    """

    space = models.ForeignKey(VectorSpace, on_delete=models.CASCADE, related_name="embeddings")
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.BigIntegerField()
    content_object = GenericForeignKey("content_type", "object_id")
    image = VectorField(null=True)
    text = VectorField(null=True)
    fused = VectorField(null=True)
    learned = VectorField(null=True)
    lexical = SparseVectorField(null=True, editable=False)
    lexical_length = models.PositiveIntegerField(null=True, editable=False)
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


class DocumentFrequency(models.Model):
    """How many of a space's items carry a lexical term (a hashed token): BM25's IDF at query time.

    The worker keeps it in the transaction that writes the items' lexical vectors. Two rows
    per space hold totals instead of a term: ``ITEMS`` (items with a lexical vector) and
    ``TERMS`` (their lengths summed; the mean length normalises a document's weights).
    """

    ITEMS = -1
    TERMS = -2

    space = models.ForeignKey(VectorSpace, on_delete=models.CASCADE, related_name="document_frequencies")
    term = models.BigIntegerField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["space", "term"], name="similarity_one_frequency_per_term")]

    def __str__(self) -> str:
        return f"space {self.space_id} term {self.term}: {self.count}"


class CatalogFit(models.Model):
    """What the periodic fit learned from one registered model's categorised items: the fixed
    fusion's image/text weights and the category classifier (``similarity.learning``).

    Kept in the database, not beside the checkpoints: every web and worker process reads the
    same row, and a catalog restored from a backup brings its fit along.
    """

    model_label = models.CharField(_("model"), max_length=100, unique=True)
    image_weight = models.FloatField(_("image weight"), null=True, blank=True)
    text_weight = models.FloatField(_("text weight"), null=True, blank=True)
    weights_report = models.JSONField(_("how the weights were chosen"), default=dict, blank=True)
    # ``CategoryClassifier.to_bytes()``, and a fingerprint of the encoders whose vectors it reads.
    classifier = models.BinaryField(null=True, blank=True)
    classifier_inputs = models.CharField(max_length=40, blank=True)
    classifier_report = models.JSONField(_("classifier per level"), default=dict, blank=True)
    # ``similarity.matches.fitting``: the same-product scorer and the catalog statistics its
    # features read, one .npz (``PairScorer.to_bytes()`` + document frequencies).
    matcher = models.BinaryField(null=True, blank=True)
    matcher_report = models.JSONField(_("same-product scorer"), default=dict, blank=True)
    fitted_at = models.DateTimeField(_("fitted"), auto_now=True)

    class Meta:
        verbose_name = _("catalog fit")
        verbose_name_plural = _("catalog fits")

    def __str__(self) -> str:
        return f"{self.model_label} fit {self.fitted_at:%Y-%m-%d %H:%M}"


class MatchStatus(models.TextChoices):
    OPEN = "open", _("to review")
    SAME = "same", _("same product")
    DIFFERENT = "different", _("different products")


class ProductMatch(models.Model):
    """Two items of one registered model that may be the same product: the scorer's
    probability at the last scan, and the staff's decision (which trains the scorer).

    The pair is stored once, smaller key first; deleting either item deletes it.
    """

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    first_id = models.BigIntegerField(_("first item"))
    second_id = models.BigIntegerField(_("second item"))
    score = models.FloatField(_("probability of the same product"), null=True, blank=True)
    status = models.CharField(_("decision"), max_length=16, choices=MatchStatus.choices, default=MatchStatus.OPEN)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("decided by"), null=True, blank=True, on_delete=models.SET_NULL
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    scored_at = models.DateTimeField(_("scored"), null=True, blank=True)

    class Meta:
        verbose_name = _("possible duplicate")
        verbose_name_plural = _("possible duplicates")
        constraints = [
            models.UniqueConstraint(fields=["content_type", "first_id", "second_id"], name="similarity_one_match_per_pair"),
            models.CheckConstraint(condition=models.Q(first_id__lt=models.F("second_id")), name="similarity_match_ordered"),
        ]
        indexes = [models.Index(fields=["content_type", "status", "-score"], name="similarity_match_queue")]

    def __str__(self) -> str:
        return f"{self.first_id} ~ {self.second_id} ({self.get_status_display()})"


class Decision(models.TextChoices):
    OPEN = "open", _("open")
    ACCEPTED = "accepted", _("accepted")
    REJECTED = "rejected", _("rejected")


class RunStatus(models.TextChoices):
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")


class ClusterRun(models.Model):
    """One clustering of a model's active vectors: how k was chosen and how long it took.

    The row exists from the start: ``stage``, ``done`` and ``total`` say how far a running
    clustering is (the admin shows it), ``error`` why a failed one stopped.
    """

    model_label = models.CharField(_("model"), max_length=100)
    space = models.ForeignKey(VectorSpace, verbose_name=_("vector space"), null=True, on_delete=models.SET_NULL)
    column = models.CharField(_("vectors"), max_length=16)
    products = models.PositiveIntegerField(_("items clustered"), default=0)
    k = models.PositiveIntegerField(_("clusters"), default=0)
    criterion = models.CharField(_("k chosen by"), max_length=100, blank=True)
    scores = models.JSONField(_("score per k"), default=dict)
    seconds = models.JSONField(_("seconds per step"), default=dict)
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    status = models.CharField(_("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.DONE)
    stage = models.CharField(_("stage"), max_length=100, blank=True)
    done = models.PositiveIntegerField(_("items done"), default=0)
    total = models.PositiveIntegerField(_("items in this stage"), default=0)
    error = models.TextField(_("error"), blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"
        verbose_name = _("clustering run")
        verbose_name_plural = _("clustering runs")

    def __str__(self) -> str:
        return f"{self.model_label} {self.started_at:%Y-%m-%d %H:%M} (k={self.k})"

    @property
    def percent(self) -> int | None:
        """How far the current stage is, 0-100 (None when it does not count items)."""
        return min(100, round(100 * self.done / self.total)) if self.total else None


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
