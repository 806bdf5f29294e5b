"""The shared base of the graph backbones: ID embeddings propagated over the user–item graph.

Graph backbones split their training step so that alignment modules can join any of them:
``input_embeddings()`` gives the layer-0 node embeddings, ``forward_train(x0, batch)`` runs the
training pass from them (with the backbone's own augmentations) and returns a
:class:`GraphOutput`, and ``loss(batch, out)`` turns that output into the backbone's loss.
``encode(x0)`` is the deterministic pass used for ranking. For the alignment modules
(:mod:`semrec.encoder.align`) they also say what to align: ``node_kinds`` (the kinds of the
rows of ``input_embeddings()``), ``node_outputs(out, ids)`` (some rows' final representations) and
``align_targets(out, batch)`` (the batch's users and items).

A backbone splits its node table with :meth:`GraphRecommender.split` and reads rows of the
parts with :func:`~semrec.encoder.graph.gather_rows`: their gradients then go back as sparse
rows, and the table's gradient is written once per step however many losses read from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import scipy.sparse as sp
import torch
from torch import nn

from semrec.encoder.graph import gather_rows, split_nodes
from semrec.common.hparams import NonNegativeFloat, PositiveInt
from semrec.encoder.losses import bpr_loss, l2_of_parameters
from semrec.encoder.models.base import AlignTarget, Recommender
from semrec.encoder.batches import PairBatch

if TYPE_CHECKING:
    from semrec.encoder.batches import EvalBatch


@dataclass
class GraphOutput:
    """What one training pass of a graph backbone produced.

    Attributes:
        users, items: final representations, ``(U, d_out)`` and ``(I, d_out)``.
        x0: the layer-0 embeddings the pass started from, ``(U+I, dim)``.
        extras: backbone-specific intermediate results its loss needs (e.g. DCCF's views).
    """

    users: torch.Tensor
    items: torch.Tensor
    x0: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


class GraphRecommender(Recommender):
    """ID embeddings propagated over the user–item graph, trained with BPR + L2.

    Subclasses implement :meth:`encode`. Constructor arguments after ``interactions`` are
    the model's hyperparameters (settable as ``model.<name>`` in configs).

    Args:
        interactions: binary ``users × items`` training matrix.
        dim: embedding size.
        reg_weight: weight of the squared L2 norm of all parameters (RLMRec's ``reg_weight``).
    """

    batch_kind = "pairwise"
    #: the rows of :meth:`input_embeddings`: all users, then all items
    node_kinds: tuple[str, ...] = ("user", "item")
    #: constructor arguments that come from the dataset, not from the config
    data_args: tuple[str, ...] = ("interactions",)

    def __init__(self, interactions: sp.spmatrix, dim: PositiveInt = 32, reg_weight: NonNegativeFloat = 1e-6):
        super().__init__()
        self.num_users, self.num_items = interactions.shape
        self.dim = dim
        self.reg_weight = reg_weight
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_users, dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_items, dim)))

    @property
    def out_dim(self) -> int:
        """Width of the representations :meth:`encode` returns."""
        return self.dim

    @classmethod
    def from_data(cls, data, **hparams) -> "GraphRecommender":
        """Build the model for an :class:`~semrec.encoder.dataset.InteractionData`."""
        return cls(data.train, **hparams)

    #: :meth:`input_embeddings` is a new tensor at every call, which ``_gene`` masks in place
    fresh_inputs = True

    def input_embeddings(self) -> torch.Tensor:
        """Layer-0 embeddings of all nodes, users first. Shape ``(U+I, dim)``."""
        return torch.cat([self.user_emb, self.item_emb], dim=0)

    def encode(self, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item representations, ``(U, d_out)`` and ``(I, d_out)``.

        Args:
            x0: layer-0 node embeddings (default :meth:`input_embeddings`); alignment modules
                pass modified ones (e.g. masked nodes).
        """
        raise NotImplementedError

    def split(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Users and items of a node table (views; read rows with :func:`gather_rows`)."""
        return split_nodes(nodes, self.num_users)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode()

    def forward_train(self, x0: torch.Tensor | None = None, batch: PairBatch | None = None) -> GraphOutput:
        """The training pass (stochastic where the backbone is) from ``x0`` (default: the embeddings)."""
        x0 = self.input_embeddings() if x0 is None else x0
        return GraphOutput(*self.encode(x0), x0=x0)

    def node_outputs(self, out: GraphOutput, ids: torch.Tensor) -> torch.Tensor:
        """Final representations of rows ``ids`` of :meth:`input_embeddings` (users, then items)."""
        users = gather_rows(out.users, ids.clamp(max=self.num_users - 1))
        items = gather_rows(out.items, (ids - self.num_users).clamp(min=0))
        return torch.where((ids >= self.num_users)[:, None], items, users)

    def align_targets(self, out: GraphOutput, batch: PairBatch) -> list[AlignTarget]:
        """The batch's users, positive items and negative items (RLMRec aligns all three)."""
        return [AlignTarget("user", out.users, batch.users), AlignTarget("item", out.items, batch.pos),
                AlignTarget("item", out.items, batch.neg)]

    def loss(self, batch: PairBatch, out: GraphOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BPR + L2 on ``out`` (default: a fresh :meth:`forward_train`). Returns the total and its terms."""
        out = out if out is not None else self.forward_train(None, batch)
        rec = self.bpr(out, batch)
        reg = self.reg_weight * l2_of_parameters(self)
        return rec + reg, {"bpr": rec, "reg": reg}

    def bpr(self, out: GraphOutput, batch: PairBatch) -> torch.Tensor:
        """BPR of the batch's triples on the representations ``out``."""
        return bpr_loss(gather_rows(out.users, batch.users), gather_rows(out.items, batch.pos),
                        gather_rows(out.items, batch.neg))

    @torch.no_grad()
    def factors(self) -> tuple[Callable[[EvalBatch], torch.Tensor], torch.Tensor]:
        """The propagated user and item vectors (propagates once; the history is not needed)."""
        users, items = self.encode()
        return (lambda batch: users[batch.users]), items
