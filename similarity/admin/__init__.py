"""Django admin of the similarity app.

``EmbeddableAdminMixin`` is for the shop's own ModelAdmin; the app registers the admin of its
own models: trained model versions, and the cluster and category-suggestion review pages.
"""
from similarity.admin.clusters import CategoryClusterAdmin, CategorySuggestionAdmin, ClusterRunAdmin
from similarity.admin.embeddable import EmbeddableAdminMixin, attention_shares
from similarity.admin.versions import ModelVersionAdmin

__all__ = [
    "CategoryClusterAdmin",
    "CategorySuggestionAdmin",
    "ClusterRunAdmin",
    "EmbeddableAdminMixin",
    "ModelVersionAdmin",
    "attention_shares",
]
