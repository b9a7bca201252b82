"""Machine-learning code with no Django: encoders, fusion networks and their training, the
text pipeline, cluster math, evaluation metrics and safe image decoding.

Runs wherever it is imported (workers, training, benchmarks); nothing here reads settings or
touches the database. The Django side reaches it through ``similarity.backends``.
"""
