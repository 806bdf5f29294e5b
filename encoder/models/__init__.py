"""Built-in recommenders, by family. Importing this package registers them by name."""
from semrec.encoder.models.base import AlignTarget, Recommender
from semrec.encoder.models.graph import DCCF, GAT, GCCF, SGL, AutoCF, GraphOutput, GraphRecommender, LightGCN, SimGCL
from semrec.encoder.models.sequential import LLMESR, SEAR, BERT4Rec, GRU4Rec, GSASRec, SASRec, SequentialRecommender
from semrec.encoder.batches import PairBatch, SeqBatch
from semrec.encoder.models.baselines import EASE, BPRMF, ItemKNN, Markov, Popularity

__all__ = ["AlignTarget", "Recommender", "GraphOutput", "GraphRecommender", "PairBatch", "SeqBatch",
           "LightGCN", "GCCF", "SGL", "SimGCL", "DCCF", "AutoCF", "GAT", "SequentialRecommender", "SASRec", "GSASRec",
           "BERT4Rec", "GRU4Rec", "LLMESR", "SEAR", "Popularity", "ItemKNN", "EASE", "Markov", "BPRMF"]
