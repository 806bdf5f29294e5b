"""Built-in recommenders. Importing this package registers them by name."""
from semrec.encoder.models.autocf import AutoCF
from semrec.encoder.models.base import GraphOutput, GraphRecommender, PairBatch
from semrec.encoder.models.dccf import DCCF
from semrec.encoder.models.gccf import GCCF
from semrec.encoder.models.lightgcn import LightGCN
from semrec.encoder.models.sgl import SGL
from semrec.encoder.models.simgcl import SimGCL

__all__ = ["GraphOutput", "GraphRecommender", "PairBatch", "LightGCN", "GCCF", "SGL", "SimGCL", "DCCF", "AutoCF"]
