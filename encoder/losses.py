"""Losses shared by the recommenders (one place for each)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def bpr_loss(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking, ``mean(softplus(s_neg - s_pos))`` over the batch.

    Shapes: ``user``, ``pos``, ``neg``: ``(B, d)``.
    """
    return F.softplus((user * neg).sum(-1) - (user * pos).sum(-1)).mean()


def l2_of_parameters(module: nn.Module) -> torch.Tensor:
    """Sum of squared L2 norms of all trainable parameters (RLMRec's ``reg_params``)."""
    return sum(p.square().sum() for p in module.parameters() if p.requires_grad)


class _ChunkedLogSumExp(torch.autograd.Function):
    """``out_i = log Σ_j exp(scale·<a_i, c_j> + bias_j)`` without keeping the ``(n, m)`` matrix.

    Rows are processed in chunks that stay in cache, forward and backward; the backward
    recomputes each chunk's softmax from the saved ``out``. Same value and gradient as
    ``torch.logsumexp(scale * a @ c.T + bias, 1)``, at a fraction of the memory traffic.
    """

    @staticmethod
    def _logits(a_rows, c, scale, bias):
        s = (a_rows @ c.t()).mul_(scale)
        return s if bias is None else s.add_(bias)

    @staticmethod
    def forward(ctx, a, c, scale: float, bias, chunk: int):
        out = a.new_empty(a.shape[0])
        for lo in range(0, a.shape[0], chunk):
            out[lo:lo + chunk] = torch.logsumexp(_ChunkedLogSumExp._logits(a[lo:lo + chunk], c, scale, bias), 1)
        ctx.save_for_backward(a, c, out, bias)
        ctx.scale, ctx.chunk = scale, chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        a, c, out, bias = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        grad_a = torch.empty_like(a) if ctx.needs_input_grad[0] else None
        grad_c = torch.zeros_like(c) if ctx.needs_input_grad[1] else None
        for lo in range(0, a.shape[0], chunk):
            s = _ChunkedLogSumExp._logits(a[lo:lo + chunk], c, scale, bias)
            p = s.sub_(out[lo:lo + chunk, None]).exp_().mul_(grad[lo:lo + chunk, None] * scale)
            if grad_a is not None:
                torch.mm(p, c, out=grad_a[lo:lo + chunk])
            if grad_c is not None:
                grad_c.addmm_(p.t(), a[lo:lo + chunk])
        return grad_a, grad_c, None, None, None


class _WeightedLogSumExp(torch.autograd.Function):
    """``Σ_i w_i · log Σ_j exp(scale·<a_i, c_j> + bias_j)`` with its gradients found in the same pass.

    A training loss is always differentiated, so the forward pass computes each chunk's
    softmax once and turns it into the gradients at once (three matrix products and one
    ``exp`` per chunk, against four and two for a forward that the backward must redo); the
    backward only scales them. The weights ``w`` are constants (e.g. counts of repeated nodes).
    """

    @staticmethod
    def forward(ctx, a, c, w, scale: float, bias, chunk: int):
        need_a, need_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        total = a.new_zeros(())
        grad_a = torch.empty_like(a) if need_a else None
        grad_c = torch.zeros_like(c) if need_c else None
        for lo in range(0, a.shape[0], chunk):
            s = _ChunkedLogSumExp._logits(a[lo:lo + chunk], c, scale, bias)
            top = s.amax(1, keepdim=True)
            z = s.sub_(top).exp_().sum(1, keepdim=True)
            wc = w[lo:lo + chunk, None]
            total += (wc * (top + z.log())).sum()
            if need_a or need_c:
                p = s.mul_(wc * scale / z)
                if need_a:
                    torch.mm(p, c, out=grad_a[lo:lo + chunk])
                if need_c:
                    grad_c.addmm_(p.t(), a[lo:lo + chunk])
        ctx.save_for_backward(grad_a, grad_c)
        return total

    @staticmethod
    def backward(ctx, grad):
        grad_a, grad_c = ctx.saved_tensors
        return (grad_a * grad if grad_a is not None else None, grad_c * grad if grad_c is not None else None,
                None, None, None, None)


def weighted_logsumexp_similarity(a: torch.Tensor, c: torch.Tensor, weights: torch.Tensor, scale: float = 1.0,
                                  bias: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """``Σ_i weights_i · log Σ_j exp(scale·<a_i, c_j> + bias_j)``, a scalar (see :func:`logsumexp_similarity`).

    Cheaper than ``(logsumexp_similarity(a, c, scale, bias) * weights).sum()`` when gradients
    are needed (they are computed in the forward pass); ``weights`` must be a constant.
    """
    if weights.requires_grad:
        raise ValueError("weights must be constants (no gradient flows to them)")
    with _float32(a) as cast:
        a, c, bias = cast(a), cast(c), cast(bias)
        return _WeightedLogSumExp.apply(a, c, weights.to(a.dtype), scale, bias, chunk)


def logsumexp_similarity(a: torch.Tensor, c: torch.Tensor, scale: float = 1.0,
                         bias: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """``log Σ_j exp(scale·<a_i, c_j> + bias_j)`` per row of ``a``. Shapes: ``(n, d)``, ``(m, d)`` -> ``(n,)``.

    ``bias`` (``(m,)``, constant) adds a per-candidate offset, e.g. ``log(count)`` for a
    candidate that occurs ``count`` times.
    """
    with _float32(a) as cast:
        return _ChunkedLogSumExp.apply(cast(a), cast(c), scale, cast(bias), chunk)


@contextmanager
def _float32(ref: torch.Tensor):
    """Autocast off, inputs in float32, for the chunked log-sum-exps: their in-place chunk writes
    cannot take autocast's lower-precision products (``out=`` of another dtype is an error), and
    a sum of exponentials over tens of thousands of items wants float32 anyway. Yields the cast
    to apply to each input; outside autocast it changes nothing."""
    if not torch.is_autocast_enabled(ref.device.type):
        yield lambda t: t
        return
    with torch.autocast(ref.device.type, enabled=False):
        yield lambda t: t.float() if t is not None and t.is_floating_point() else t


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, candidates: torch.Tensor,
             temperature: float, bias: torch.Tensor | None = None,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE of each anchor against its positive, over a set of candidates (cosine similarity).

    ``loss_b = -cos(a_b, p_b)/τ + log Σ_c exp(cos(a_b, c)/τ)``; the candidates usually include
    the positives (RLMRec's ``cal_infonce_loss``, computed with a stable log-sum-exp).
    ``bias`` adds a constant per-candidate offset inside the sum (``log(count)`` for repeats).
    With ``weights`` (constants, e.g. how often each anchor occurs) it returns the weighted sum
    ``Σ_b weights_b · loss_b`` instead, computed with the fused forward/gradient kernel.

    Shapes: ``anchor``, ``positive``: ``(B, d)``; ``candidates``: ``(C, d)``. Returns ``(B,)``,
    or a scalar with ``weights``.
    """
    a = F.normalize(anchor, dim=-1, eps=1e-8)
    p = F.normalize(positive, dim=-1, eps=1e-8)
    c = F.normalize(candidates, dim=-1, eps=1e-8)
    if weights is None:
        return logsumexp_similarity(a, c, 1.0 / temperature, bias) - (a * p).sum(-1) / temperature
    return (weighted_logsumexp_similarity(a, c, weights, 1.0 / temperature, bias)
            - (weights * (a * p).sum(-1)).sum() / temperature)


class _GroupedInfoNCE(torch.autograd.Function):
    """``Σ_{g,i} w_gi · (log Σ_j exp(scale·cos(a_gi, p_gj) + bias_gj) - scale·cos(a_gi, p_gi))`` over groups ``g``.

    Inputs are ``(G, S, d)`` (``G`` groups of ``S`` rows). Like :class:`_WeightedLogSumExp`
    the forward pass also forms the gradients, through the cosine's normalisation too: one
    ``exp`` and three batched products, against a dozen autograd steps.
    """

    @staticmethod
    def forward(ctx, a, p, w, scale: float, bias):
        na = torch.linalg.vector_norm(a, dim=2, keepdim=True).clamp_min_(1e-8)
        np_ = torch.linalg.vector_norm(p, dim=2, keepdim=True).clamp_min_(1e-8)
        a, p = a / na, p / np_
        positive = torch.linalg.vecdot(a, p, dim=2).mul_(scale)
        s = torch.baddbmm(bias[:, None, :], a, p.transpose(1, 2), alpha=scale)  # scaled logits + bias, one pass
        top = s.amax(2, keepdim=True)
        z = s.sub_(top).exp_().sum(2, keepdim=True)
        total = (w * (top.squeeze(2) + z.squeeze(2).log() - positive)).sum()
        g = s.mul_(w[:, :, None] * scale / z)  # softmax, weighted and scaled: d total / d logits
        g.diagonal(dim1=1, dim2=2).sub_(w * scale)

        def through_norm(grad_unit, unit, norm):  # d/dx of x/|x|, applied to grad_unit
            dot = torch.linalg.vecdot(unit, grad_unit, dim=2).unsqueeze(2)
            return torch.addcmul(grad_unit, unit, dot, value=-1).div_(norm)

        need_a, need_p = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(through_norm(torch.bmm(g, p), a, na) if need_a else None,
                              through_norm(torch.bmm(g.transpose(1, 2), a), p, np_) if need_p else None)
        return total

    @staticmethod
    def backward(ctx, grad):
        grad_a, grad_p = ctx.saved_tensors
        return (grad_a * grad if grad_a is not None else None, grad_p * grad if grad_p is not None else None,
                None, None, None)


def pad_to_groups(x: torch.Tensor, size: int, fill: float | None = None) -> torch.Tensor:
    """``x`` with rows appended up to a multiple of ``size`` rows: ``fill``, or with ``None``
    copies of its first row (e.g. for an index: any valid row)."""
    pad = -x.shape[0] % size
    if not pad:
        return x
    extra = x[:1].expand(pad, *x.shape[1:]) if fill is None else x.new_full((pad, *x.shape[1:]), fill)
    return torch.cat([x, extra])


def grouped_info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float, group: int,
                     bias: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                     segments: Sequence[int] | None = None) -> torch.Tensor:
    """:func:`info_nce` with each anchor's candidates cut to the positives of its group of rows.

    The rows are cut, in the order given, into consecutive groups of ``group`` rows (the last
    group of a segment may be shorter); anchor ``b`` is scored against the positives of its own
    group, its own included. ``segments`` (row counts summing to ``n``; default one segment)
    keeps rows of different segments, e.g. users and items, out of each other's groups.
    Shuffle the rows first for random groups. With ``group >= n`` it is ``info_nce(anchor,
    positive, positive, ...)``; a smaller group costs ``n * group`` similarities instead of
    ``n²`` (cheap in-batch negatives for a large batch). ``bias`` (``(n,)``, constant) is each
    row's offset as a candidate; ``weights`` (constants, default 1) weigh the rows. Returns the
    scalar ``Σ_b weights_b · loss_b``; all groups go through one fused kernel.

    A segment is padded to whole groups with rows of weight 0 and bias ``-inf``, which add
    nothing to the value or the gradients; a caller that gathers its rows can pad the index
    instead (:func:`pad_to_groups`) and pass segments that are multiples of ``group``, which
    costs no copy here.
    """
    if group < 1:
        raise ValueError(f"group must be at least 1, got {group}")
    n = anchor.shape[0]
    segments = [n] if segments is None else list(segments)
    if sum(segments) != n or min(segments, default=1) < 1:
        raise ValueError(f"segments {segments} must be positive row counts summing to {n}")
    size = min(group, max(segments))
    w = anchor.new_ones(n) if weights is None else weights.to(anchor.dtype)
    b = anchor.new_zeros(n) if bias is None else bias.to(anchor.dtype)
    if any(length % size for length in segments):  # pad each segment: one gather per input
        index, real, lo = [], [], 0
        for length in segments:
            index.append(pad_to_groups(torch.arange(lo, lo + length, device=anchor.device), size))
            real.append(pad_to_groups(torch.ones(length, dtype=torch.bool, device=anchor.device), size, fill=False))
            lo += length
        index, real = torch.cat(index), torch.cat(real)
        anchor, positive = anchor.index_select(0, index), positive.index_select(0, index)
        w = w.index_select(0, index).masked_fill_(~real, 0.0)
        b = b.index_select(0, index).masked_fill_(~real, float("-inf"))
    d = anchor.shape[1]
    return _GroupedInfoNCE.apply(anchor.reshape(-1, size, d), positive.reshape(-1, size, d), w.view(-1, size),
                                 1.0 / temperature, b.view(-1, size))


# ----- next-item losses of sequence models ------------------------------------------------------
# ``h``: (P, d) sequence states at the P scored positions; ``pos``: (P,) their target items;
# ``s_pos``: (P,) target scores; ``s_neg``: (P, k) scores of k sampled negatives per position.
def full_softmax_ce(h: torch.Tensor, items: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each position's target over every item (``items``: the ``(I, d)`` table),
    averaged over positions. The ``(P, I)`` logits are never held at once (chunked log-sum-exp,
    see :func:`weighted_logsumexp_similarity`), which keeps a full softmax over tens of thousands
    of items cheap in memory."""
    weights = torch.full((h.shape[0],), 1.0 / max(h.shape[0], 1), dtype=h.dtype, device=h.device)
    return weighted_logsumexp_similarity(h, items, weights) - (h * items[pos]).sum(-1).mean()


def sampled_softmax_ce(s_pos: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the target against its ``k`` sampled negatives, averaged over positions."""
    logits = torch.cat([s_pos[:, None], s_neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def sampled_bce(s_pos: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
    """SASRec's loss: ``-log σ(s+) - Σ_k log(1 - σ(s-_k))`` per position, averaged over positions."""
    return (F.softplus(-s_pos) + F.softplus(s_neg).sum(-1)).mean()


def gbce_beta(negatives: int, num_items: int, t: float) -> float:
    """gSASRec's exponent ``β = α(t(1 - 1/α) + 1/α)`` with ``α = k / (I - 1)`` the sampling rate."""
    alpha = negatives / (num_items - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce_positive_logit(s_pos: torch.Tensor, beta: float) -> torch.Tensor:
    """The logit ``z`` with ``σ(z) = σ(s)^β``, in float64: ``z = a - log(1 - e^a)``, ``a = β·log σ(s)``.

    Written with ``log σ`` and ``expm1`` so that no probability is formed: stable for any ``s``
    (``a`` is capped just below 0, where ``z`` would be infinite; that moves ``σ(z)`` by 1e-15)."""
    a = (beta * F.logsigmoid(s_pos.double())).clamp(max=-1e-15)
    return a - torch.log(-torch.expm1(a))


def gbce(s_pos: torch.Tensor, s_neg: torch.Tensor, num_items: int, t: float) -> torch.Tensor:
    """Generalised BCE of gSASRec (Petrov & Macdonald, RecSys 2023): BCE of the transformed
    positive logit (:func:`gbce_positive_logit`) and the ``k`` negatives, averaged over the
    ``k + 1`` terms of every position and over positions. ``t = 0`` is plain BCE; ``t = 1``
    calibrates the scores to the full-softmax probabilities. Only the positive term needs float64
    (as in the paper's code); the negatives' softplus is stable in their own precision, and with
    2,048 negatives their float64 copy and softplus took a quarter of a gSASRec step on a CPU (a one-off
    profile, docs/benchmarks.md)."""
    beta = gbce_beta(s_neg.shape[1], num_items, t)
    z = gbce_positive_logit(s_pos, beta)
    per_position = F.softplus(-z) + F.softplus(s_neg).sum(-1).double()
    return (per_position / (s_neg.shape[1] + 1)).mean().to(s_pos.dtype)
