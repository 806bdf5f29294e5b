"""Install semrec. Everything (metadata, dependencies, extras, the folder -> package map) is in
pyproject.toml; this shim stays for tools and habits that call ``setup.py``."""
from setuptools import setup

setup()
