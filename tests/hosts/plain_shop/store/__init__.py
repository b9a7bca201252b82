"""The shop's catalogue: items on shelves, with photos."""
