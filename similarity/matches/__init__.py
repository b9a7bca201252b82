"""Same-product matching, the Django side: scoring candidate pairs from stored rows, the
staff's decisions, fitting the scorer on them (``similarity.ml.matching`` holds the model)."""
