"""The demo's storefront page: products with "add to basket" and the recommendations widget.

A page a shop can copy: it uses only what any host has, the app's public API
(``POST /api/products/recommendations/``) through the app's static widget
(``similarity/recommendations.js``).
"""
from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from catalog.models import Product

PER_PAGE = 24


@ensure_csrf_cookie  # the widget's POST carries the token when the shopper is signed in
def shop(request: HttpRequest) -> HttpResponse:
    """Active products, a page at a time, with the basket and what it recommends."""
    products = Product.objects.filter(is_active=True).prefetch_related("images").order_by("pk")
    page = Paginator(products, PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "catalog/shop.html", {"page": page})
