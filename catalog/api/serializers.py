"""Serializers of the catalog API."""
from __future__ import annotations

from rest_framework import serializers

from ..models import Category, Product


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name", "slug", "path", "parent"]


class ProductSerializer(serializers.ModelSerializer):
    category = CategorySerializer(read_only=True)
    image = serializers.SerializerMethodField()

    class Meta:
        model = Product
        fields = [
            "id", "sku", "title", "description", "brand", "price", "currency", "category",
            "is_active", "image", "embedding_status", "embedding_modalities", "created_at", "updated_at",
        ]

    def get_image(self, obj: Product) -> str | None:
        image = obj.primary_image
        if image is None:
            return None
        request = self.context.get("request")
        url = image.image.url
        return request.build_absolute_uri(url) if request else url
