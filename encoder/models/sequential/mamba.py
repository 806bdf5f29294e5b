"""Mamba's selective state-space block, on any machine.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023.
https://arxiv.org/abs/2312.00752 (reference code: https://github.com/state-spaces/mamba)

The selective scan is the recurrence, per channel ``d`` and state ``n``::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t        y_t = C_t · h_t + D x_t

with input-dependent ``Δ``, ``B``, ``C``. ``mamba-ssm`` computes it with CUDA kernels only;
:func:`selective_scan` uses them where the package is installed and the tensors are on CUDA, and
otherwise computes the same function in PyTorch by one of two methods:

* ``parallel``: a Hillis–Steele scan, ``log2 L`` steps, each combining every position with the one
  ``2^k`` before it (decays multiply, inputs accumulate): no loop over positions, but every step
  reads and writes the whole ``(batch, L, d, n)`` state;
* ``loop``: one position at a time, each step a few fused operations over batch, channels and
  states, with the backward pass written out (:class:`_LoopScan`).

On a CPU the loop is the faster by several times at recommendation lengths (the parallel scans,
this one and mambapy's, move ``log L`` times the state through memory; docs/benchmarks.md,
"Selective scan on a CPU"), so ``auto`` takes it there, and the parallel scan on a GPU without ``mamba-ssm``,
where each step's kernel launches cost more than its memory traffic (not measured here: no GPU).

:class:`MambaBlock` is the block around the scan (input projection, causal depthwise convolution,
SiLU, the input-dependent ``Δ``, ``B``, ``C``, the gate, the output projection), for left-padded
batches: padding is zeroed before the convolution and given ``Δ = 0`` (no decay, no input), so a
real position's output is that of the unpadded sequence.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F


def _reference_scan_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import mamba_ssm.ops.selective_scan_interface  # noqa: F401
    except ImportError:
        return False
    return True


SCANS = ("auto", "parallel", "loop")


def selective_scan(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, method: str = "auto") -> torch.Tensor:
    """The selective scan (module docstring).

    Shapes:
        x, delta: ``(batch, L, d)``; A: ``(d, n)`` (negative for a decay); B, C: ``(batch, L, n)``;
        D: ``(d,)``. Returns ``(batch, L, d)``.
    """
    if method not in SCANS:
        raise ValueError(f"scan method must be one of {', '.join(SCANS)}, got {method!r}")
    if method == "auto" and _reference_scan_available(x.device):
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        y = selective_scan_fn(x.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A.contiguous(),
                              B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
                              None if D is None else D.float(), delta_softplus=False)
        return y.transpose(1, 2)
    if method == "loop" or (method == "auto" and x.device.type == "cpu"):
        y = _loop_scan(x, delta, A, B, C)
    else:
        y = _parallel_scan(x, delta, A, B, C)
    return y if D is None else y + x * D


def _parallel_scan(x, delta, A, B, C) -> torch.Tensor:
    decay = torch.exp(delta.unsqueeze(-1) * A)  # (b, L, d, n), in (0, 1]
    h = (delta * x).unsqueeze(-1) * B.unsqueeze(2)  # (b, L, d, n): the inputs
    length, step = x.shape[1], 1
    while step < length:  # after this step, position t holds the scan over (t - 2*step, t]
        h = torch.cat([h[:, :step], h[:, step:] + decay[:, step:] * h[:, :-step]], dim=1)
        decay = torch.cat([decay[:, :step], decay[:, step:] * decay[:, :-step]], dim=1)
        step *= 2
    return torch.einsum("bldn,bln->bld", h, C)


class _LoopScan(torch.autograd.Function):
    """The recurrence one position a step, with its backward pass written out.

    Autograd through a plain loop records half a dozen small operations a position and twice as
    many backwards, each a pass over a ``(batch, d, n)`` state (most of a SEAR step on a CPU).
    Here each position is a few fused passes over data that stays in cache (forward: ``h_t =
    a_t h_{t-1} + Δ_t x_t B_t`` with ``a_t = exp(Δ_t A)``; backward: ``g_t = C_t ∂y_t + a_{t+1}
    g_{t+1}``, the same recurrence reversed, and each position's share of the gradients at once).
    The states are kept for the backward pass, the decays recomputed there. Forming every
    position's decays at once instead (one large ``exp``) is slower here: each fresh ``(batch, L,
    d, n)`` tensor is new memory (page faults) and leaves the cache.
    """

    @staticmethod
    def forward(ctx, x, delta, A, B, C):
        b, length, d = x.shape
        states = x.new_empty(b, length, d, A.shape[1])
        u = delta * x
        decay = x.new_empty(b, d, A.shape[1])
        for t in range(length):
            torch.mul(u[:, t, :, None], B[:, t, None, :], out=states[:, t])
            if t:
                torch.mul(delta[:, t, :, None], A, out=decay).exp_()
                states[:, t].addcmul_(decay, states[:, t - 1])
        ctx.save_for_backward(x, delta, A, B, C, states)
        return torch.matmul(states, C.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def backward(ctx, grad_y):
        x, delta, A, B, C, states = ctx.saved_tensors
        b, length, d = x.shape
        u = delta * x
        grad_C = torch.matmul(grad_y.unsqueeze(-2), states).squeeze(-2)
        grad_u, grad_B = torch.empty_like(x), torch.empty_like(B)
        grad_delta, grad_A = torch.zeros_like(delta), torch.zeros_like(A)
        g = x.new_zeros(b, d, A.shape[1])  # ∂loss/∂h_t, carried back
        decay, exponent = torch.empty_like(g), torch.empty_like(g)  # reused: fresh 4 MB blocks cost page faults
        for t in range(length - 1, -1, -1):
            g.addcmul_(grad_y[:, t, :, None], C[:, t, None, :])
            grad_u[:, t] = torch.matmul(g, B[:, t, :, None]).squeeze(-1)
            grad_B[:, t] = torch.matmul(u[:, t, None, :], g).squeeze(-2)
            if t:  # h_t = a_t h_{t-1} + ...: a_t = exp(Δ_t A) gets g_t h_{t-1}, through exp and Δ_t A
                torch.mul(delta[:, t, :, None], A, out=decay).exp_()
                g.mul_(decay)  # g's share for h_{t-1}
                torch.mul(g, states[:, t - 1], out=exponent)
                grad_delta[:, t] = torch.einsum("bdn,dn->bd", exponent, A)
                grad_A.add_(torch.einsum("bdn,bd->dn", exponent, delta[:, t]))
        return grad_u * delta, grad_delta + grad_u * x, grad_A, grad_B, grad_C


def _loop_scan(x, delta, A, B, C) -> torch.Tensor:
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in (delta, A, B, C)), x.dtype)
    x, delta, A, B, C = (t.to(dtype) for t in (x, delta, A, B, C))  # its in-place steps want one dtype
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, delta, A, B, C)):
        return _LoopScan.apply(x, delta, A, B, C)
    # no backward pass to come (evaluation): one state at a time, not all of them
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    y, u = x.new_empty(x.shape), delta * x
    for t in range(x.shape[1]):
        h.mul_(torch.mul(delta[:, t, :, None], A).exp_()).addcmul_(u[:, t, :, None], B[:, t, None, :])
        y[:, t] = torch.matmul(h, C[:, t, :, None]).squeeze(-1)
    return y


class MambaBlock(nn.Module):
    """Mamba's block on ``(batch, L, dim)`` vectors of a left-padded batch.

    Args:
        dim: model width.
        state: the state size ``n`` per channel (the paper: 16).
        conv: width of the causal depthwise convolution (the paper: 4).
        expand: inner width as a multiple of ``dim`` (the paper: 2).
        dt_rank: rank of ``Δ``'s projection (default ``ceil(dim / 16)``, the paper's).
        scan: how the selective scan runs (:func:`selective_scan`: ``auto``, ``parallel``, ``loop``).
    """

    def __init__(self, dim: int, state: int = 16, conv: int = 4, expand: int = 2, dt_rank: int | None = None,
                 scan: str = "auto"):
        super().__init__()
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {', '.join(SCANS)}, got {scan!r}")
        self.scan = scan
        inner = expand * dim
        self.inner, self.state, self.conv_width = inner, state, conv
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, conv, groups=inner, padding=conv - 1)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self.reset_dt()

    @torch.no_grad()
    def reset_dt(self, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        """The paper's start for ``Δ``: its bias so that softplus gives steps log-uniform in
        ``[dt_min, dt_max]`` (a model's own initialisation may overwrite the other layers)."""
        dt = torch.exp(torch.rand(self.inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        keep = valid[..., None].to(x.dtype)
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = self.conv((u * keep).transpose(1, 2))[..., :length].transpose(1, 2)  # causal: the first L outputs
        u = F.silu(u)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.state, self.state], dim=-1)
        delta = F.softplus(self.dt_proj(dt)) * keep  # padding: no decay, no input
        y = selective_scan(u, delta, -torch.exp(self.A_log.float()), B, C, self.D, self.scan)
        return self.out_proj(y * F.silu(z)) * keep
