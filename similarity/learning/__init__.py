"""Learning: train a fusion model on the shop's categories, evaluate it on held-out products,
register it as a version and activate it only if it is better (Django glue around
``similarity.ml.fusion``; worker or command-line process)."""
