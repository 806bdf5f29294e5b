"""Sequential recommenders: next-item prediction from a user's time-ordered history."""
from semrec.encoder.models.sequential.base import SequentialRecommender
from semrec.encoder.models.sequential.bert4rec import BERT4Rec
from semrec.encoder.models.sequential.gru4rec import GRU4Rec
from semrec.encoder.models.sequential.gsasrec import GSASRec
from semrec.encoder.models.sequential.llmesr import LLMESR
from semrec.encoder.models.sequential.sasrec import SASRec
from semrec.encoder.models.sequential.sear import SEAR

__all__ = ["SequentialRecommender", "SASRec", "GSASRec", "BERT4Rec", "GRU4Rec", "LLMESR", "SEAR"]
