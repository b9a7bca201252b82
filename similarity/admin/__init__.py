"""Django admin of the similarity app.

``SimilarityAdminMixin`` (or ``extend(Model)``) adds the panels to the host's own ModelAdmin;
the app registers the admin of its own models: trained model versions, catalog fits (fusion weights, category classifier), the cluster and
category-suggestion review pages, and the review queue of possible duplicates.
"""
from similarity.admin.clusters import CategoryClusterAdmin, CategorySuggestionAdmin, ClusterRunAdmin
from similarity.admin.items import SimilarityAdminMixin, attention_shares, extend
from similarity.admin.matches import ProductMatchAdmin
from similarity.admin.versions import CatalogFitAdmin, ModelVersionAdmin

__all__ = [
    "CatalogFitAdmin",
    "CategoryClusterAdmin",
    "CategorySuggestionAdmin",
    "ClusterRunAdmin",
    "ModelVersionAdmin",
    "ProductMatchAdmin",
    "SimilarityAdminMixin",
    "attention_shares",
    "extend",
]
