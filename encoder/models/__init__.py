"""Built-in recommenders. Importing this package registers them by name."""
from semrec.encoder.models.base import GraphRecommender, PairBatch
from semrec.encoder.models.gccf import GCCF
from semrec.encoder.models.lightgcn import LightGCN

__all__ = ["GraphRecommender", "PairBatch", "LightGCN", "GCCF"]
