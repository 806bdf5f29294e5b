"""Datasets and the scripts that make them (demo, download, read_profile)."""
