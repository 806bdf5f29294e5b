"""Command: encode user and item profiles into semantic embeddings (``generate_emb.py``)."""
