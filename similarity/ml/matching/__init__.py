"""Same-product matching: is this listing the same product as that one?

No Django. ``listing`` is what one product offers (title, description, brand, price),
``pairs`` reads labelled pairs in the Ditto format, ``features`` turns candidate pairs into
fixed-length vectors, ``scorer`` turns those into probabilities (numpy only at prediction
time; scikit-learn fits on a worker), ``thresholds`` chooses where a probability means "same".
"""
