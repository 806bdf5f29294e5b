"""The user–item graph as a normalised sparse adjacency, with edge dropout and a fast spmm.

The bipartite graph of ``U`` users and ``I`` items is the ``(U+I)×(U+I)`` matrix
``A = [[0, R], [Rᵀ, 0]]`` (optionally ``+ I`` self-loops, as GCCF uses), normalised
symmetrically: ``Â = D^-1/2 A D^-1/2``.

It is stored in CSR form together with a permutation to its transpose, so both the
product ``Â X`` and its gradient ``Âᵀ G`` run on torch's CSR kernels (MKL on CPU, cuSPARSE
on GPU). Edge dropout keeps each stored entry independently with probability
``keep_rate`` (as RLMRec and SSLRec do: values are not rescaled); a dropped entry becomes a
stored zero in both CSR views, so no structure is rebuilt.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


def normalized_adjacency(train: sp.spmatrix, self_loops: bool = False) -> sp.csr_matrix:
    """Symmetrically normalised bipartite adjacency ``D^-1/2 (A [+ I]) D^-1/2``.

    Args:
        train: binary ``U × I`` interaction matrix.
        self_loops: add the identity before normalising (GCCF).

    Returns:
        ``(U+I) × (U+I)`` CSR matrix (float32) with sorted indices. Isolated nodes get
        zero rows.
    """
    r = sp.csr_matrix(train, dtype=np.float32)
    r.data[:] = 1.0
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    if self_loops:
        adj = (adj + sp.identity(adj.shape[0], dtype=np.float32, format="csr")).tocsr()
    deg = np.asarray(adj.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(deg > 0, deg ** -0.5, 0.0).astype(np.float32)
    adj = sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)
    adj = adj.tocsr()
    adj.sort_indices()
    return adj


def spmm(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sparse CSR ``a`` times dense ``x``.

    On CPU, ``addmm`` into a fresh output with ``beta=0`` skips the zero-fill and the copy that
    ``torch.sparse.mm`` adds around the MKL kernel; elsewhere ``torch.sparse.mm``.
    """
    if a.device.type != "cpu":
        return torch.sparse.mm(a, x)
    x = x.contiguous()
    out = x.new_empty(a.shape[0], x.shape[1])
    return torch.addmm(out, a, x, beta=0.0, out=out)


class _CSRMatMul(torch.autograd.Function):
    """``A @ X`` for a constant sparse ``A``; the backward uses the stored ``Aᵀ``."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        return spmm(a, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, spmm(ctx.a_t, grad)


class _WeightedCSRMatMul(torch.autograd.Function):
    """``A_w @ X`` for a fixed sparsity pattern with learnable entry values ``w``."""

    @staticmethod
    def forward(ctx, graph: "SparseGraph", values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.graph = graph
        ctx.save_for_backward(values, x)
        return spmm(graph._csr(graph.crow, graph.col, values), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = ctx.graph
        values, x = ctx.saved_tensors
        grad = grad.contiguous()
        grad_values = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_values = g._sddmm(grad, x)
        if ctx.needs_input_grad[2]:
            grad_x = spmm(g._csr(g.t_crow, g.t_col, values.index_select(0, g.t_perm)), grad)
        return None, grad_values, grad_x


class _EdgeDot(torch.autograd.Function):
    """``<x_r, y_c>`` for every stored entry ``(r, c)`` (a sampled dense-dense product)."""

    @staticmethod
    def forward(ctx, graph: "SparseGraph", x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.graph = graph
        ctx.save_for_backward(x, y)
        return graph._sddmm(x, y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = ctx.graph
        x, y = ctx.saved_tensors
        grad_x = spmm(g._csr(g.crow, g.col, grad), y) if ctx.needs_input_grad[1] else None
        grad_y = (spmm(g._csr(g.t_crow, g.t_col, grad.index_select(0, g.t_perm)), x)
                  if ctx.needs_input_grad[2] else None)
        return None, grad_x, grad_y


class SparseGraph(nn.Module):
    """A fixed sparse square matrix that moves with the model and supports edge dropout.

    Args:
        matrix: square scipy sparse matrix (e.g. from :func:`normalized_adjacency`).

    The index and value arrays are buffers, so ``model.to(device)`` moves the graph.
    """

    def __init__(self, matrix: sp.spmatrix):
        super().__init__()
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sort_indices()
        n = m.shape[0]
        if m.shape != (n, n):
            raise ValueError(f"SparseGraph needs a square matrix, got {m.shape}")
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(m.indptr))
        cols = m.indices.astype(np.int64)
        # Position of every entry of Mᵀ (in Mᵀ's CSR order) within M's CSR order.
        to_transposed = np.lexsort((rows, cols))
        self.num_nodes = n
        self.register_buffer("crow", torch.from_numpy(m.indptr.astype(np.int64)), persistent=False)
        self.register_buffer("row", torch.from_numpy(rows), persistent=False)
        self.register_buffer("col", torch.from_numpy(cols), persistent=False)
        self.register_buffer("val", torch.from_numpy(m.data.copy()), persistent=False)
        self.register_buffer("t_crow", torch.from_numpy(
            np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n))]).astype(np.int64)),
            persistent=False)
        self.register_buffer("t_perm", torch.from_numpy(to_transposed), persistent=False)
        self.register_buffer("t_col", torch.from_numpy(rows[to_transposed]), persistent=False)
        self.register_buffer("t_val", torch.from_numpy(m.data[to_transposed]), persistent=False)
        self._full: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    def _apply(self, fn, recurse=True):  # device moves invalidate the cached CSR tensors
        self._full = None
        return super()._apply(fn, recurse)

    def _csr(self, crow, col, val) -> torch.Tensor:
        n = self.num_nodes
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col, val, (n, n), check_invariants=False)

    def matrices(self, keep_rate: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The matrix and its transpose as torch CSR tensors, with edge dropout if ``keep_rate < 1``."""
        if keep_rate >= 1.0:
            if self._full is None:
                self._full = (self._csr(self.crow, self.col, self.val), self._csr(self.t_crow, self.t_col, self.t_val))
            return self._full
        # Dropped entries are stored as zeros: the same product as removing them, without
        # rebuilding either CSR structure (the kernels touch 1/keep_rate more entries).
        keep = (torch.rand(self.nnz, device=self.val.device) < keep_rate).to(self.val.dtype)
        return (self._csr(self.crow, self.col, self.val * keep),
                self._csr(self.t_crow, self.t_col, self.t_val * keep.index_select(0, self.t_perm)))

    def propagate(self, x: torch.Tensor, mats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``Â x`` with gradients flowing to ``x``.

        Args:
            x: ``(num_nodes, d)`` dense features.
            mats: the pair from :meth:`matrices` (default: the full graph).
        """
        a, a_t = mats if mats is not None else self.matrices()
        if not x.requires_grad:
            return spmm(a, x)
        return _CSRMatMul.apply(a, a_t, x)

    def weighted_propagate(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``A_w x`` where ``A_w`` has this graph's entries with new ``values`` (one per entry,
        in CSR order); gradients flow to both ``values`` and ``x``."""
        return _WeightedCSRMatMul.apply(self, values, x)

    def edge_dot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``<x[r], y[c]>`` for every entry ``(r, c)``, in CSR order, differentiable. Shape ``(nnz,)``."""
        return _EdgeDot.apply(self, x, y)

    def _sddmm(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pattern = self._csr(self.crow, self.col, torch.zeros_like(self.val, dtype=x.dtype))
        return torch.sparse.sampled_addmm(pattern, x.contiguous(), y.t().contiguous(), beta=0.0).values()

    def row_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Per-row sum of entry ``values`` (differentiable). Shape ``(num_nodes,)``."""
        return torch.zeros(self.num_nodes, dtype=values.dtype, device=values.device).index_add(0, self.row, values)

    def to_dense(self) -> torch.Tensor:
        """Dense copy, for tests and small graphs."""
        return self.matrices()[0].to_dense()


class _SplitNodes(torch.autograd.Function):
    """A node table's user and item rows as two views; the backward builds the table's
    gradient once, from dense or sparse row gradients of either part."""

    @staticmethod
    def forward(ctx, nodes: torch.Tensor, num_users: int) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)  # an unused part costs a zero-fill of its rows only
        ctx.num_users, ctx.shape, ctx.dtype, ctx.device = num_users, nodes.shape, nodes.dtype, nodes.device
        return nodes[:num_users], nodes[num_users:]

    @staticmethod
    def backward(ctx, grad_users: torch.Tensor | None, grad_items: torch.Tensor | None):
        grad = torch.empty(ctx.shape, dtype=ctx.dtype, device=ctx.device)
        for part, g in ((grad[: ctx.num_users], grad_users), (grad[ctx.num_users:], grad_items)):
            if g is None:
                part.zero_()
            elif g.is_sparse:  # rows from gather_rows, uncoalesced: index_add_ sums repeats
                part.zero_().index_add_(0, g._indices()[0], g._values())
            else:
                part.copy_(g)
        return grad, None


class _GatherRows(torch.autograd.Function):
    """``table[ids]`` whose gradient is a sparse COO tensor of the gathered rows."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.shape = table.shape
        return table.index_select(0, ids)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (ids,) = ctx.saved_tensors
        return torch.sparse_coo_tensor(ids[None], grad, ctx.shape, check_invariants=False), None


def split_nodes(nodes: torch.Tensor, num_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Users ``nodes[:num_users]`` and items ``nodes[num_users:]`` (views).

    Rows read from them with :func:`gather_rows` pass their gradients back as sparse rows,
    and the whole table's gradient is written once. Plain slices would give each part, and
    each gather, a zero-filled gradient the size of its table, which autograd then adds up:
    on a CPU most of a small model's backward pass (docs/benchmarks.md).
    """
    if not torch.is_grad_enabled() or not nodes.requires_grad:
        return nodes[:num_users], nodes[num_users:]
    return _SplitNodes.apply(nodes, num_users)


def gather_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table.index_select(0, ids)``; if ``table`` is a part from :func:`split_nodes`, its
    gradient goes back as sparse rows (anything else gets the usual dense gradient, so a
    parameter's ``.grad`` never turns sparse)."""
    if torch.is_grad_enabled() and isinstance(table.grad_fn, _SplitNodes._backward_cls):
        return _GatherRows.apply(table, ids)
    return table.index_select(0, ids)
