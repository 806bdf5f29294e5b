"""Cross-view alignment of a recommender with LLM semantic embeddings (RLMRec, WWW 2024).

Ren et al., "Representation Learning with Large Language Models for Recommendation".
https://arxiv.org/abs/2310.15950

Two alignment modules (:class:`Alignment`: ``prepare`` the layer-0 rows, then ``step`` on what
the backbone's pass returned), each usable with any backbone, graph or sequential, that provides
:class:`~semrec.encoder.models.base.AlignableBackbone`:

* :class:`ContrastiveAlignment` (RLMRec-Con, ``<backbone>_plus``): an MLP maps the semantic
  embeddings into the collaborative space; InfoNCE pulls each collaborative representation
  towards its own projected semantic embedding.
* :class:`GenerativeAlignment` (RLMRec-Gen, ``<backbone>_gene``): a fraction of nodes get a
  learnable mask token as input; an MLP reconstructs their semantic embeddings from their
  collaborative output, scored by InfoNCE among the masked nodes.

:class:`AlignedModel` joins a backbone and an alignment; the registry builds
``<backbone>_plus`` and ``<backbone>_gene`` for every registered backbone.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from semrec.encoder.dataset import EMBEDDING_FILES, DataError, InteractionData
from semrec.encoder.graph import gather_rows
from semrec.common.hparams import NonNegativeFloat, NonNegativeInt, OpenUnit, PositiveFloat, choice
from semrec.encoder.losses import grouped_info_nce, info_nce, pad_to_groups
from semrec.encoder.models.base import AlignableBackbone, AlignTarget, Recommender
from semrec.common.linalg import pca


def projection(in_dim: int, out_dim: int) -> nn.Sequential:
    """RLMRec's two-layer MLP: ``in -> (in+out)//2 -> LeakyReLU -> out``, Xavier weights."""
    hidden = (in_dim + out_dim) // 2
    mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, out_dim))
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
    return mlp


#: settings of the semantic inputs themselves, set as ``align.<name>`` beside the alignment's
#: own arguments: name -> (type, default)
TABLE_OPTIONS = {"shuffle": (bool, False), "sem_dim": (NonNegativeInt, 0)}


def semantic_tables(data: InteractionData, shuffle: bool = False, sem_dim: int = 0,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's user and item semantic embeddings, checked.

    Args:
        shuffle: permute the rows (the control run: same vectors, wrong owners).
        sem_dim: if > 0, project both tables onto the top ``sem_dim`` principal components of
            their union (one PCA for users and items, which share the semantic space). A
            faster approximation: the alignment MLPs then work on ``sem_dim`` inputs instead of
            e.g. 1536.
    """
    missing = [EMBEDDING_FILES[k] for k in ("user", "item") if getattr(data, f"{k}_emb") is None]
    if missing:
        raise DataError(f"{data.path or data.name}: aligned models need semantic embeddings; missing "
                        f"{', '.join(missing)}. Generate them with `python generation/emb/generate_emb.py "
                        f"--dataset {data.name}` (the demo dataset ships its own)")
    if data.user_emb.shape[1] != data.item_emb.shape[1]:
        raise DataError(f"{data.path or data.name}: user and item semantic embeddings differ in width "
                        f"({data.user_emb.shape[1]} vs {data.item_emb.shape[1]})")
    # Components 1e20 times smaller than the tables' largest carry nothing, but their products with
    # the InfoNCE's small gradients are subnormal floats, which CPUs compute up to 100x slower (a
    # bfloat16 encoder writes a few ~1e-37 a row): zeros here. The data keeps them (its fingerprint).
    top = max(float(np.abs(e).max(initial=0.0)) for e in (data.user_emb, data.item_emb))
    users, items = (np.where(np.abs(e) < 1e-20 * top, np.float32(0), e) for e in (data.user_emb, data.item_emb))
    if sem_dim:
        if not 0 < sem_dim <= users.shape[1]:
            raise ValueError(f"align.sem_dim must be in 1..{users.shape[1]} (the embeddings' width) "
                             f"or 0 for no reduction, got {sem_dim}")
        both = pca(np.concatenate([users, items]), sem_dim)
        users, items = both[: len(users)], both[len(users):]
    if shuffle:  # control: same vectors, wrong owners
        rng = np.random.default_rng(seed)
        users, items = users[rng.permutation(len(users))], items[rng.permutation(len(items))]
    return users, items


def _check_negatives(negatives: int) -> None:
    if negatives < 0:
        raise ValueError(f"negatives must be 0 (every candidate) or a positive count, got {negatives}")


def _pool_targets(targets: Sequence[AlignTarget]) -> list[tuple[AlignTarget, int]]:
    """Whole-table targets of one kind and table joined into one (a graph's positive and
    negative items), each with the number of targets it joins.

    A joined target's mean over its occurrences, times that number, is the sum of the
    joined targets' means; its distinct nodes are computed once and form one pool of
    candidates (with ``negatives``, the groups are drawn from all of them).
    """
    joined: dict[tuple[str, int], list[AlignTarget]] = {}
    pooled = []
    for t in targets:
        if t.per_row:
            pooled.append((t, 1))
        else:
            joined.setdefault((t.kind, id(t.reps)), []).append(t)
    for ts in joined.values():
        pooled.append((ts[0]._replace(ids=torch.cat([t.ids for t in ts])), len(ts)))
    return pooled


class Alignment(nn.Module):
    """An alignment's step: :meth:`prepare` the backbone's layer-0 rows (returning the rows the
    pass reads and a context), then :meth:`step` on the pass's output, returning named losses."""

    def prepare(self, x0: torch.Tensor, candidates: torch.Tensor | None = None,
                in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rows the backbone's pass reads (``x0`` as it is, by default) and a context for :meth:`step`."""
        return x0, None

    def step(self, backbone: AlignableBackbone, out: Any, batch: Any,
             ctx: torch.Tensor | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class ContrastiveAlignment(Alignment):
    """RLMRec-Con.

    Args:
        user_sem, item_sem: semantic embeddings ``(U, s)`` and ``(I, s)`` (kept as buffers).
        collab_dim: width of the backbone's output representations.
        kd_weight: weight of the alignment loss.
        kd_temperature: InfoNCE temperature.
        user_negatives: ``all`` (RLMRec: every user's projected profile is a negative for a
            batch user) or ``batch`` (only the batch's distinct users: much cheaper).
        negatives: 0 for the candidates above. ``K > 0`` (needs ``user_negatives=batch``): the
            batch's distinct users, and its distinct items (positive and negative pooled), go
            in random groups of ``K + 1``, each contrasted with its own group only
            (:func:`grouped_info_nce`): ``K + 1`` similarities per row instead of one per
            batch node. The cheap variant of in-batch negatives; see docs/benchmarks.md.
        max_rows: 0 for every row. ``M > 0`` (needs ``negatives``, and ``M > negatives``):
            each step aligns at most ``M`` of the batch's distinct users and ``M`` of its
            distinct items (per joined target, see :func:`_pool_targets`), a uniform sample
            weighted up by ``rows / M``. A row's group is then a random group of the sample,
            which is a random group of all the rows, so the expected loss is that of
            ``negatives`` alone (up to the shorter last group of a segment), with less work
            per step and more variance.

    Negatives follow RLMRec: a batch user is contrasted with the projections of all users
    (or the batch's, see ``user_negatives``); a batch item (each of a graph backbone's
    positive and negative item lists is its own target) with the projections of that
    target's items, duplicates included. With a whole table as ``reps``, each distinct node
    is computed once and weighted by its count. Each target contributes the mean over its
    occurrences, so a graph step equals RLMRec's sum of three per-batch means.
    """

    data_args = ("user_sem", "item_sem", "collab_dim")

    def __init__(self, user_sem: np.ndarray, item_sem: np.ndarray, collab_dim: int, kd_weight: NonNegativeFloat = 1e-2,
                 kd_temperature: PositiveFloat = 0.2, user_negatives: choice("all", "batch") = "all", negatives: NonNegativeInt = 0,
                 max_rows: NonNegativeInt = 0):
        super().__init__()
        if user_negatives not in ("all", "batch"):
            raise ValueError(f"user_negatives must be 'all' or 'batch', got {user_negatives!r}")
        _check_negatives(negatives)
        if negatives and user_negatives == "all":
            raise ValueError("negatives > 0 draws each row's negatives from the batch: set user_negatives=batch "
                             "as well (or negatives=0 for every user's profile)")
        if max_rows and not negatives:
            raise ValueError("max_rows samples the rows that negatives puts in groups: set negatives as well "
                             "(or max_rows=0)")
        if max_rows < 0 or (max_rows and max_rows <= negatives):
            raise ValueError(f"max_rows must be 0 (every row) or larger than negatives ({negatives}), got {max_rows}")
        # data, not weights: kept out of state_dict and checkpoints
        self.register_buffer("user_sem", torch.as_tensor(user_sem, dtype=torch.float32), persistent=False)
        self.register_buffer("item_sem", torch.as_tensor(item_sem, dtype=torch.float32), persistent=False)
        self.mlp = projection(self.user_sem.shape[1], collab_dim)
        self.kd_weight, self.kd_temperature, self.user_negatives = kd_weight, kd_temperature, user_negatives
        self.negatives, self.max_rows = negatives, max_rows

    def _term(self, target: AlignTarget) -> torch.Tensor:
        """Mean over the occurrences of InfoNCE(collaborative, projected semantics).

        Candidates: for users, ``all`` rows of the table or the ``batch``'s distinct ids; for
        items, the occurrences (duplicates counted, via a log-multiplicity added to each logit).
        """
        if target.kind not in ("user", "item"):
            raise ValueError(f"alignment target kind must be 'user' or 'item', got {target.kind!r}")
        table = self.user_sem if target.kind == "user" else self.item_sem
        uniq, inverse, counts = torch.unique(target.ids, return_inverse=True, return_counts=True)
        projected = self.mlp(table.index_select(0, uniq))  # index_select: a much faster backward than [ ]
        if target.per_row:
            anchors, positives = target.reps, projected[inverse]
            weights = torch.ones(target.ids.numel(), dtype=projected.dtype, device=projected.device)
        else:
            anchors, positives, weights = gather_rows(target.reps, uniq), projected, counts
        pool, bias = projected, None
        if target.kind == "user" and self.user_negatives == "all":
            rest = torch.ones(table.shape[0], dtype=torch.bool, device=uniq.device)
            rest[uniq] = False
            pool = torch.cat([projected, self.mlp(table[rest])])
        elif target.kind == "item":
            bias = counts.log().to(projected.dtype)
        return info_nce(anchors, positives, pool, self.kd_temperature, bias, weights=weights) / target.ids.numel()

    def _grouped(self, targets: Sequence[AlignTarget]) -> torch.Tensor:
        """The sum of the targets' terms with ``negatives``: random groups of ``negatives + 1``.

        Each joined target (:func:`_pool_targets`) contributes its distinct nodes (weighted by
        count, items' candidates offset by log count) or with ``per_row`` its occurrences, in
        random order, as one segment of rows; one MLP call and one grouped InfoNCE cover all.
        Segments are padded to whole groups in their gather indices (:func:`pad_to_groups`).
        """
        parts = []
        for t, k in _pool_targets(targets):
            table = self.user_sem if t.kind == "user" else self.item_sem
            if t.per_row:  # rows of reps, in random order
                take = torch.randperm(t.ids.numel(), device=t.ids.device)
                ids, count = t.ids.index_select(0, take), torch.ones_like(take)
            else:  # distinct nodes, in random order
                counts = torch.bincount(t.ids, minlength=table.shape[0])
                ids = counts.nonzero().squeeze(1)
                ids = take = ids[torch.randperm(ids.numel(), device=ids.device)]
                count = counts.index_select(0, ids)
            weight = count * (k / t.ids.numel())
            if self.max_rows and take.numel() > self.max_rows:  # a uniform sample: the first rows of a random order
                weight = weight[: self.max_rows] * (take.numel() / self.max_rows)
                take, ids, count = take[: self.max_rows], ids[: self.max_rows], count[: self.max_rows]
            bias = count.log() if t.kind == "item" and not t.per_row else torch.zeros(count.shape, device=count.device)
            parts.append((t.reps, table, take, ids, weight, bias))
        size = min(self.negatives + 1, max(len(part[2]) for part in parts))
        anchors, rows, weights, biases = [], [], [], []
        for reps, table, take, ids, weight, bias in parts:
            anchors.append(gather_rows(reps, pad_to_groups(take, size)))
            rows.append(table.index_select(0, pad_to_groups(ids, size)))
            weights.append(pad_to_groups(weight, size, fill=0.0))
            biases.append(pad_to_groups(bias, size, fill=float("-inf")))
        return grouped_info_nce(torch.cat(anchors), self.mlp(torch.cat(rows)), self.kd_temperature, size,
                                torch.cat(biases), torch.cat(weights))

    def loss(self, targets: Sequence[AlignTarget]) -> dict[str, torch.Tensor]:
        """The weighted alignment loss of one step's targets."""
        if self.negatives:
            return {"align": self.kd_weight * self._grouped(targets)}
        return {"align": self.kd_weight * sum(self._term(t) for t in targets)}

    def step(self, backbone: AlignableBackbone, out: Any, batch: Any,
             ctx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """:meth:`loss` of the targets ``backbone.align_targets(out, batch)``."""
        return self.loss(backbone.align_targets(out, batch))


class GenerativeAlignment(Alignment):
    """RLMRec-Gen.

    Args:
        user_sem, item_sem: semantic embeddings ``(U, s)`` and ``(I, s)`` (kept as buffers).
        collab_dim: width of the backbone's output representations.
        input_dim: width of the backbone's layer-0 embeddings (the mask token's size).
        node_kinds: the kinds of the rows of the backbone's layer-0 table, in order (its
            ``node_kinds``): ``("user", "item")`` for a graph, ``("item",)`` for a sequence encoder.
        mask_ratio: fraction of all nodes masked per step (at least one).
        recon_weight: weight of the reconstruction loss.
        re_temperature: temperature of the reconstruction InfoNCE.
        negatives: 0 for RLMRec's candidates (every masked node); ``K > 0`` for a random group
            of ``K + 1`` masked nodes per row (:func:`grouped_info_nce`).

    The masked nodes' collaborative outputs go through an MLP to the semantic space; the loss
    is InfoNCE between each reconstruction and its node's semantic embedding, the other
    masked nodes' embeddings being the negatives (RLMRec's ``ssl_con_loss``).
    """

    data_args = ("user_sem", "item_sem", "collab_dim", "input_dim", "node_kinds")

    def __init__(self, user_sem: np.ndarray, item_sem: np.ndarray, collab_dim: int, input_dim: int,
                 node_kinds: tuple[str, ...] = ("user", "item"), mask_ratio: OpenUnit = 0.1,
                 recon_weight: NonNegativeFloat = 0.1, re_temperature: PositiveFloat = 0.2, negatives: NonNegativeInt = 0):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        _check_negatives(negatives)
        tables = {"user": user_sem, "item": item_sem}
        if not node_kinds or any(k not in tables for k in node_kinds):
            raise ValueError(f"node_kinds must be a sequence of 'user' / 'item', got {node_kinds!r}")
        sem = np.concatenate([np.asarray(tables[k]) for k in node_kinds])
        self.register_buffer("sem", torch.as_tensor(sem, dtype=torch.float32), persistent=False)
        self.mask_token = nn.Parameter(torch.zeros(1, input_dim))
        self.mlp = projection(collab_dim, self.sem.shape[1])
        self.mask_ratio, self.recon_weight, self.re_temperature = mask_ratio, recon_weight, re_temperature
        self.negatives = negatives

    def prepare(self, x0: torch.Tensor, candidates: torch.Tensor | None = None,
                in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace a random ``mask_ratio`` of the nodes' inputs with the mask token: of all
        nodes, or of ``candidates`` where the backbone names them (a sequence model: the items
        its batch reads). ``in_place``: ``x0`` is a fresh tensor (the backbone's
        ``fresh_inputs``), masked without copying the whole table; the seeds are the context."""
        n = x0.shape[0]
        if n != self.sem.shape[0]:
            raise ValueError(f"the layer-0 table has {n} rows, the semantic tables of its node kinds "
                             f"{self.sem.shape[0]}: node_kinds does not describe this backbone")
        if candidates is None:
            seeds = torch.randperm(n, device=x0.device)[: max(int(n * self.mask_ratio), 1)]
        else:
            pick = torch.randperm(candidates.numel(), device=x0.device)[: max(int(candidates.numel() * self.mask_ratio), 1)]
            seeds = candidates[pick]
        token = self.mask_token.expand(seeds.numel(), -1)
        if in_place:
            return x0.index_put_((seeds,), token), seeds
        return x0.index_put((seeds,), token), seeds

    def loss(self, masked: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction loss of the masked rows ``seeds`` of the layer-0 table from
        ``masked``, their final representations (``(len(seeds), collab_dim)``)."""
        recon, target = self.mlp(masked), self.sem.index_select(0, seeds)
        if self.negatives:  # the seeds are in random order: consecutive groups are random
            loss = grouped_info_nce(recon, target, self.re_temperature, self.negatives + 1) / seeds.numel()
        else:
            loss = info_nce(recon, target, target, self.re_temperature).mean()
        return {"recon": self.recon_weight * loss}

    def step(self, backbone: AlignableBackbone, out: Any, batch: Any,
             ctx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """:meth:`loss` of ``backbone.node_outputs(out, seeds)``, the seeds being :meth:`prepare`'s context."""
        return self.loss(backbone.node_outputs(out, ctx), ctx)


ALIGNMENTS = {"plus": ContrastiveAlignment, "gene": GenerativeAlignment}


class AlignedModel(Recommender):
    """A backbone trained with an alignment loss; ranks with the backbone alone.

    Subclasses made by :func:`aligned_model_class` fix ``backbone_cls`` and ``alignment_cls``.
    """

    backbone_cls: type
    alignment_cls: type
    #: settings of the semantic tables, set as ``align.<name>`` beside the alignment's own
    table_options = TABLE_OPTIONS

    def __init__(self, backbone: nn.Module, alignment: nn.Module):
        super().__init__()
        self.backbone, self.alignment = backbone, alignment
        self.batch_kind = backbone.batch_kind

    @classmethod
    def from_data(cls, data: InteractionData, align: dict | None = None, **hparams) -> "AlignedModel":
        align = dict(align or {})
        table_opts = {k: align.pop(k) for k in TABLE_OPTIONS if k in align}
        backbone = cls.backbone_cls.from_data(data, **hparams)
        users, items = semantic_tables(data, **table_opts)
        given = {"user_sem": users, "item_sem": items, "collab_dim": backbone.out_dim,
                 "input_dim": backbone.dim, "node_kinds": tuple(backbone.node_kinds)}
        alignment = cls.alignment_cls(**{k: given[k] for k in cls.alignment_cls.data_args}, **align)
        return cls(backbone, alignment)

    @property
    def history_len(self) -> int:
        return self.backbone.history_len

    @property
    def history_ratings(self) -> bool:
        return self.backbone.history_ratings

    def sampler_options(self) -> dict:
        return self.backbone.sampler_options()

    def start_epoch(self, epoch: int) -> None:
        self.backbone.start_epoch(epoch)

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        candidates = self.backbone.mask_candidates(batch)
        x0, ctx = self.alignment.prepare(self.backbone.input_embeddings(), candidates, self.backbone.fresh_inputs)
        out = self.backbone.forward_train(x0, batch)
        loss, parts = self.backbone.loss(batch, out)
        extra = self.alignment.step(self.backbone, out, batch, ctx)
        return loss + sum(extra.values()), {**parts, **extra}

    def factors(self):
        return self.backbone.factors()


_CACHE: dict[tuple[type, str], type] = {}


def aligned_model_class(backbone_cls: type, kind: str) -> type:
    """The class of ``<backbone>_<kind>`` (kind ``plus`` or ``gene``), made once."""
    key = (backbone_cls, kind)
    if key not in _CACHE:
        name = f"{backbone_cls.registered_name}_{kind}"
        _CACHE[key] = type(f"{backbone_cls.__name__}_{kind}", (AlignedModel,), {
            "backbone_cls": backbone_cls, "alignment_cls": ALIGNMENTS[kind], "registered_name": name,
            "data_args": backbone_cls.data_args, "__doc__": f"{backbone_cls.__name__} with {ALIGNMENTS[kind].__name__}."})
    return _CACHE[key]
