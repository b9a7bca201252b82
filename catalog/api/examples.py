"""Example responses for the API schema (/api/schema/, /api/docs/): realistic products."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample

# The shapes the similarity mixins document, filled with products.
_DRESSES = {"id": 5, "name": "连衣裙", "slug": "连衣裙", "path": "服装 > 女装 > 连衣裙", "parent": 4}
_PHONES = {"id": 9, "name": "手机", "slug": "手机", "path": "数码 > 手机", "parent": 8}


def _product(pk: int, sku: str, title: str, price: str, category: dict[str, Any], brand: str = "") -> dict[str, Any]:
    return {
        "id": pk, "sku": sku, "title": title, "description": "", "brand": brand, "price": price, "currency": "CNY",
        "category": category, "is_active": True, "image": f"https://shop.example.cn/media/products/{sku.lower()}/1.jpg",
        "embedding_status": "ready", "embedding_modalities": "image+text",
        "created_at": "2026-03-02T09:14:05Z", "updated_at": "2026-03-02T09:15:40Z",
    }


SIMILAR_EXAMPLE = OpenApiExample(
    "red dresses under 500",
    description="GET /api/products/12/similar/?k=2&category=5&price_max=500",
    value={
        "id": 12, "mode": "fused", "k": 2, "embedding_status": "ready", "space": "3f9a1c0d2b7e",
        "results": [
            {
                "score": 0.9132,
                "item": _product(31, "D1031", "红色雪纺连衣裙 夏季新款 收腰显瘦", "259.00", _DRESSES, "伊芙丽"),
                "explanation": {
                    "image_similarity": 0.9411, "text_similarity": 0.8820,
                    "attention": {"image": 0.72, "sentence": 0.2, "recurrent": 0.08},
                    "shared_keywords": ["红色", "连衣裙", "夏季"],
                },
            },
            {
                "score": 0.8874,
                "item": _product(45, "D1045", "碎花连衣裙 红色 V领 中长款", "199.00", _DRESSES),
                "explanation": {
                    "image_similarity": 0.9025, "text_similarity": 0.8107,
                    "attention": {"image": 0.69, "sentence": 0.22, "recurrent": 0.09},
                    "shared_keywords": ["红色", "连衣裙"],
                },
            },
        ],
    },
)
SUGGESTIONS_EXAMPLE = OpenApiExample(
    "a dress filed under shirts",
    description="GET /api/products/77/category-suggestions/",
    value={
        "id": 77, "current_category": "服装 > 女装 > 衬衫",
        "suggestions": [
            {"category": {"id": 5, "path": "服装 > 女装 > 连衣裙"}, "confidence": 0.8125, "votes": 13, "source": "neighbours"},
            {"category": {"id": 6, "path": "服装 > 女装 > 衬衫"}, "confidence": 0.1875, "votes": 3, "source": "neighbours"},
        ],
        "likely_miscategorised": True,
    },
)
SEARCH_EXAMPLES = [
    OpenApiExample(
        "Chinese query",
        description="GET /api/search/?q=华为手机 256G&k=1",
        value={
            "query": "华为手机 256G", "k": 1,
            "results": [{
                "score": 1.0874,
                "item": _product(203, "P2031", "华为 Mate 60 Pro 256G 雅川青 手机", "6999.00", _PHONES, "华为"),
                "explanation": {
                    "image_similarity": None, "text_similarity": 0.7874, "attention": None,
                    "shared_keywords": ["华为", "手机", "256g"], "exact_match": False,
                },
            }],
        },
    ),
    OpenApiExample(
        "exact sku",
        description="GET /api/search/?q=P2031&k=1",
        value={
            "query": "P2031", "k": 1,
            "results": [{
                "score": 0.2143,
                "item": _product(203, "P2031", "华为 Mate 60 Pro 256G 雅川青 手机", "6999.00", _PHONES, "华为"),
                "explanation": {
                    "image_similarity": None, "text_similarity": 0.2143, "attention": None,
                    "shared_keywords": [], "exact_match": True,
                },
            }],
        },
    ),
]
IMAGE_SEARCH_EXAMPLE = OpenApiExample(
    "a photo of a red dress",
    description="POST /api/search/image/?price_max=300 with the form fields image=@photo.jpg, k=1",
    value={
        "k": 1,
        "results": [{
            "score": 0.9318,
            "item": _product(31, "D1031", "红色雪纺连衣裙 夏季新款 收腰显瘦", "259.00", _DRESSES, "伊芙丽"),
            "explanation": {
                "image_similarity": 0.9318, "text_similarity": None,
                "attention": {"image": 0.72, "sentence": 0.2, "recurrent": 0.08}, "shared_keywords": [],
            },
        }],
    },
)
