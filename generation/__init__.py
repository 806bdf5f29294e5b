"""LLM profile and semantic-embedding generation (see docs/generation.md once it lands)."""
