"""Mamba's selective scan in PyTorch against the recurrence it computes, and the block on padding."""
from __future__ import annotations

import pytest
import torch

from semrec.encoder.models.sequential.mamba import MambaBlock, selective_scan


def naive_scan(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               D: torch.Tensor | None = None) -> torch.Tensor:
    """The recurrence as written, in float64, one position at a time: the definition the scans are
    tested against."""
    x, delta, A, B, C = (t.double() for t in (x, delta, A, B, C))
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    out = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * x[:, t, :, None] * B[:, t, None, :]
        out.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    y = torch.stack(out, dim=1)
    return y if D is None else y + x * D.double()


def _inputs(b=3, length=37, d=5, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, length, d, generator=g, dtype=torch.float64)
    delta = torch.nn.functional.softplus(torch.randn(b, length, d, generator=g, dtype=torch.float64))
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 3
    B = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    C = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    D = torch.randn(d, generator=g, dtype=torch.float64)
    return [t.requires_grad_(True) for t in (x, delta, A, B, C, D)]


@pytest.mark.parametrize("method", ["parallel", "loop", "auto"])
@pytest.mark.parametrize("length", [1, 2, 37, 64])
def test_the_scan_is_the_recurrence_in_values_and_gradients(method, length):
    """Lengths that are and are not powers of two, one position included."""
    inputs = _inputs(length=length)
    got = selective_scan(*inputs, method=method)
    want = naive_scan(*inputs)
    assert got.shape == (3, length, 5)
    assert torch.allclose(got, want, atol=1e-10)
    weights = torch.randn_like(got)
    g_got = torch.autograd.grad((got * weights).sum(), inputs, materialize_grads=True)  # one position: A unused
    g_want = torch.autograd.grad((want * weights).sum(), inputs)
    for name, a, b in zip("x delta A B C D".split(), g_got, g_want):
        assert torch.allclose(a, b, atol=1e-9), name


@pytest.mark.parametrize("method", ["parallel", "loop"])
def test_the_scan_without_gradients_is_the_same_recurrence(method):
    """Evaluation runs the scan under ``no_grad``: the loop then keeps one state, not all."""
    inputs = _inputs(length=23)
    with torch.no_grad():
        got = selective_scan(*inputs, method=method)
    assert torch.allclose(got, naive_scan(*inputs), atol=1e-10)


def test_the_loop_scan_computes_mixed_precision_inputs_in_the_wider_type():
    """bfloat16 activations with a float32 ``A`` (autocast's mix): computed in float32, gradients
    back in each input's own type."""
    x, delta, A, B, C, _ = (t.detach() for t in _inputs(length=9))
    half = [t.to(torch.bfloat16).requires_grad_(True) for t in (x, delta, B, C)]
    A = A.float().requires_grad_(True)
    y = selective_scan(half[0], half[1], A, half[2], half[3], method="loop")
    assert y.dtype == torch.float32
    want = naive_scan(half[0].detach(), half[1].detach(), A.detach(), half[2].detach(), half[3].detach())
    assert torch.allclose(y.double(), want, atol=1e-4)
    y.sum().backward()
    assert [t.grad.dtype for t in half] == [torch.bfloat16] * 4 and A.grad.dtype == torch.float32


def test_the_scan_state_decays_and_accumulates_as_written():
    """A hand case: one channel, one state, A = -ln 2 and Δ = 1 halve the state each step."""
    x = torch.tensor([[[1.0], [0.0], [2.0]]])
    delta = torch.ones(1, 3, 1)
    A = torch.tensor([[-torch.log(torch.tensor(2.0))]])
    ones = torch.ones(1, 3, 1)
    y = selective_scan(x, delta, A, ones, ones, method="parallel")
    assert torch.allclose(y.flatten(), torch.tensor([0.5 * 0 + 1.0, 0.5, 0.25 + 2.0]))


@pytest.mark.parametrize("scan", ["parallel", "loop"])
def test_left_padding_changes_no_real_position(scan):
    torch.manual_seed(0)
    block = MambaBlock(8, state=4, scan=scan).double()
    seq = torch.randn(2, 6, 8, dtype=torch.float64)
    noise = torch.randn(2, 5, 8, dtype=torch.float64) * 10  # padding rows hold anything
    valid = torch.ones(2, 6, dtype=torch.bool)
    padded_valid = torch.cat([torch.zeros(2, 5, dtype=torch.bool), valid], dim=1)
    plain = block(seq, valid)
    padded = block(torch.cat([noise, seq], dim=1), padded_valid)
    assert torch.allclose(padded[:, 5:], plain, atol=1e-12)
    assert padded[:, :5].abs().max() == 0  # padding outputs are zero
    # rows of different lengths in one batch: each row as if alone
    mixed_valid = padded_valid.clone()
    mixed_valid[1, 5:7] = False
    mixed = block(torch.cat([noise, seq], dim=1), mixed_valid)
    alone = block(seq[1:, 2:], valid[1:, 2:])
    assert torch.allclose(mixed[1, 7:], alone[0], atol=1e-12)


def test_the_block_trains_every_parameter():
    torch.manual_seed(0)
    block = MambaBlock(8, state=4)
    out = block(torch.randn(3, 7, 8), torch.ones(3, 7, dtype=torch.bool))
    out.pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_an_unknown_scan_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="scan must be one of auto, parallel, loop, got 'fast'"):
        MambaBlock(8, scan="fast")
