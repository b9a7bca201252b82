"""Reusable DRF pieces: viewset mixins and serializers for similarity endpoints."""
