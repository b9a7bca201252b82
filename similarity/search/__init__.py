"""The READ path, run by the web process: nearest neighbours with filters, explanations, text
search, and the encoding of search queries (text here, photos through a worker)."""
