"""REST API of the catalog: products, their similar items."""
