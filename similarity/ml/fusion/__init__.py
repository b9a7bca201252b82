"""Fusion of image and text vectors into one vector (no Django)."""
