"""LLM profile and semantic-embedding generation (docs/generation.md).

``prompts`` builds item/user prompts from a prepared dataset's training split, ``llm`` talks
to any OpenAI-compatible endpoint, ``cache`` keeps every reply, ``profiles`` runs a whole
dataset (the ``item/`` and ``user/`` commands), ``embedding`` and ``emb/`` encode profiles,
``mmr`` selects review sentences, ``serve_local`` serves a small local model on 127.0.0.1.
"""
