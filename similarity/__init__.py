"""similarity: product vectors, nearest neighbours and category tools for Django shops.

Add ``similarity`` to INSTALLED_APPS, mix ``similarity.models.Embeddable`` into a model and
implement ``get_embedding_text()`` / ``get_embedding_image()``. Saving such a model schedules
encoding on the ``similarity`` Celery queue; ``similarity.search.queries`` finds neighbours.
"""

__version__ = "0.9.0"
