"""Graph recommenders: ID embeddings propagated over the user–item interaction graph."""
from semrec.encoder.models.graph.autocf import AutoCF
from semrec.encoder.models.graph.base import GraphOutput, GraphRecommender
from semrec.encoder.models.graph.dccf import DCCF
from semrec.encoder.models.graph.gat import GAT
from semrec.encoder.models.graph.gccf import GCCF
from semrec.encoder.models.graph.lightgcn import LightGCN
from semrec.encoder.models.graph.sgl import SGL
from semrec.encoder.models.graph.simgcl import SimGCL

__all__ = ["GraphOutput", "GraphRecommender", "LightGCN", "GCCF", "SGL", "SimGCL", "DCCF", "AutoCF", "GAT"]
