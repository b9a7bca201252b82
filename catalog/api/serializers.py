"""Serializers of the catalog API."""
from __future__ import annotations

from rest_framework import serializers

from similarity.api.serializers import EmbeddingModalitiesField, EncodingStatusField

from ..models import Category, Product, ProductImage

# The attribute a queryset annotated with its first photo's file name sets (see
# ProductAdapter.results_queryset); without it the photos are read (or prefetched).
PRIMARY_IMAGE = "_primary_image_name"


class CategorySerializer(serializers.ModelSerializer):
    # Unicode ("连衣裙"): JSON Schema reads the model field's pattern [-\w] as ASCII only.
    slug = serializers.CharField(read_only=True, help_text="the category's slug (Unicode letters allowed)")

    class Meta:
        model = Category
        fields = ["id", "name", "slug", "path", "parent"]


class ProductSerializer(serializers.ModelSerializer):
    category = CategorySerializer(read_only=True, allow_null=True)  # null: not categorised
    image = serializers.SerializerMethodField()
    embedding_status = EncodingStatusField()
    embedding_modalities = EmbeddingModalitiesField()

    class Meta:
        model = Product
        fields = [
            "id", "sku", "title", "description", "brand", "price", "currency", "category",
            "is_active", "image", "embedding_status", "embedding_modalities", "created_at", "updated_at",
        ]

    def get_image(self, obj: Product) -> str | None:
        if hasattr(obj, PRIMARY_IMAGE):  # results: the name came with the row
            name = getattr(obj, PRIMARY_IMAGE)
            if name is None:
                return None
            url = ProductImage._meta.get_field("image").storage.url(name)
        else:
            image = obj.primary_image
            if image is None:
                return None
            url = image.image.url
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url
