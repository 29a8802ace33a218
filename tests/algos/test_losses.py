"""Tests for src.algos.losses with hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch

from src.algos.losses import (
    aggregate_loss,
    entropy_from_logits,
    kl_penalty,
    masked_mean,
    policy_gradient_loss,
)

F64 = torch.float64


# ----------------------------------------------------------------------------------------------------
# masked_mean / aggregate_loss
# ----------------------------------------------------------------------------------------------------

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=F64)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)


def test_masked_mean():
    # Real entries 1, 2, 4 -> 7/3; per row: (1+2)/2 = 1.5, 4/1 = 4.
    assert masked_mean(LOSS, MASK).item() == pytest.approx(7.0 / 3.0)
    assert torch.equal(masked_mean(LOSS, MASK, dim=1), torch.tensor([1.5, 4.0], dtype=F64))
    # Float weights: (1*1 + 2*0.5) / 1.5 = 4/3; empty mask -> 0, not NaN.
    w = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    assert masked_mean(LOSS, w).item() == pytest.approx(4.0 / 3.0)
    assert torch.equal(masked_mean(LOSS, w, dim=1), torch.tensor([4.0 / 3.0, 0.0], dtype=F64))
    with pytest.raises(ValueError, match=r"values \(2, 3\), mask \(3, 2\)"):
        masked_mean(LOSS, MASK.T)


@pytest.mark.parametrize(
    "mode,mask,expected",
    [
        # tokens 1, 2 | 4: sum 7 over 3 tokens
        ("token-mean", MASK, 7.0 / 3.0),
        # row sums 3 and 4 -> (3 + 4) / 2
        ("seq-mean-token-sum", MASK, 3.5),
        # row means 1.5 and 4 -> (1.5 + 4) / 2
        ("seq-mean-token-mean", MASK, 2.75),
        # second row empty: it is skipped, not counted as a zero row
        ("token-mean", torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool), 1.5),
        ("seq-mean-token-sum", torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool), 3.0),
        ("seq-mean-token-mean", torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool), 1.5),
        # float mask, all ones: 21/6, rows sums 6 and 15 -> 10.5, row means 2 and 5 -> 3.5
        ("token-mean", torch.ones(2, 3), 3.5),
        ("seq-mean-token-sum", torch.ones(2, 3), 10.5),
        ("seq-mean-token-mean", torch.ones(2, 3), 3.5),
    ],
)
def test_aggregate_loss_modes(mode, mask, expected):
    out = aggregate_loss(LOSS, mask, mode)
    assert out.dim() == 0
    assert out.item() == pytest.approx(expected)


def test_aggregate_loss_errors():
    with pytest.raises(ValueError, match="token-mean, seq-mean-token-sum, seq-mean-token-mean"):
        aggregate_loss(LOSS, MASK, "sum")
    with pytest.raises(ValueError, match=r"loss_mat \(2, 3\), mask \(2, 2\)"):
        aggregate_loss(LOSS, MASK[:, :2], "token-mean")
    assert aggregate_loss(LOSS, torch.zeros(2, 3), "seq-mean-token-mean").item() == 0.0


# ----------------------------------------------------------------------------------------------------
# policy_gradient_loss
# ----------------------------------------------------------------------------------------------------

def _pg(ratios, adv, **kw):
    """Run the loss on one row per ratio (L = 1), old log-prob 0, so log_probs = log(ratio)."""
    lp = torch.log(torch.tensor(ratios, dtype=F64)).unsqueeze(1).requires_grad_(True)
    old = torch.zeros_like(lp)
    mask = torch.ones_like(lp, dtype=torch.bool)
    loss, metrics = policy_gradient_loss(lp, old, torch.tensor(adv, dtype=F64), mask, **kw)
    return lp, loss, metrics


def test_clip_higher_positive_advantage():
    # A = +1, range (0.8, 1.28):
    #   r = 1.1: pg1 = -1.1, pg2 = -1.1           -> -1.1  (inside)
    #   r = 1.5: pg1 = -1.5, pg2 = -1.28          -> -1.28 (clipped, no gradient)
    #   r = 0.5: pg1 = -0.5, pg2 = -0.8           -> -0.5  (low side not clipped for A > 0)
    # token-mean = (-1.1 - 1.28 - 0.5) / 3 = -0.96; clipfrac = 1/3
    lp, loss, m = _pg([1.1, 1.5, 0.5], [1.0, 1.0, 1.0], clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(-0.96)
    assert m["clipfrac"].item() == pytest.approx(1.0 / 3.0)
    loss.backward()
    # d(-r)/d lp = -r / 3 for unclipped tokens; 0 for the clipped one.
    torch.testing.assert_close(lp.grad.squeeze(1), torch.tensor([-1.1 / 3, 0.0, -0.5 / 3], dtype=F64))


def test_clip_higher_negative_advantage():
    # A = -1, range (0.8, 1.28):
    #   r = 0.5: pg1 = 0.5, pg2 = 0.8  -> 0.8 (clipped)
    #   r = 1.5: pg1 = 1.5, pg2 = 1.28 -> 1.5 (high side not clipped for A < 0)
    #   r = 1.1: pg1 = 1.1, pg2 = 1.1  -> 1.1
    # token-mean = (0.8 + 1.5 + 1.1) / 3 = 3.4 / 3
    _, loss, m = _pg([0.5, 1.5, 1.1], [-1.0, -1.0, -1.0], clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(3.4 / 3.0)
    assert m["clipfrac"].item() == pytest.approx(1.0 / 3.0)


def test_dual_clip():
    # c = 3. A = -1: r = 5 -> max(5, 1.2) = 5, min(5, 3) = 3; r = 2 -> min(2, 3) = 2.
    # A = +1, r = 5: -> max(-5, -1.2) = -1.2, dual clip does not apply to A > 0.
    # A = -2, r = 0.5: max(1.0, 1.6) = 1.6, min(1.6, 6) = 1.6.
    # token-mean = (3 + 2 - 1.2 + 1.6) / 4 = 5.4 / 4 = 1.35
    lp, loss, _ = _pg([5.0, 2.0, 5.0, 0.5], [-1.0, -1.0, 1.0, -2.0], dual_clip=3.0)
    assert loss.item() == pytest.approx(1.35)
    loss.backward()
    # The r = 5, A = -1 token is held at the constant 3 -> zero gradient. The r = 2, A = -1 token's loss is
    # -A r / 4 = r / 4 with dr/dlp = r, so its gradient is 2 / 4 = 0.5.
    assert lp.grad[0, 0].item() == 0.0
    assert lp.grad[1, 0].item() == pytest.approx(0.5)
    # Without the dual clip the r = 5, A = -1 token contributes 5: (5 + 2 - 1.2 + 1.6) / 4 = 1.85
    _, loss_nodual, _ = _pg([5.0, 2.0, 5.0, 0.5], [-1.0, -1.0, 1.0, -2.0])
    assert loss_nodual.item() == pytest.approx(1.85)


def test_pg_per_token_advantages_metrics_and_padding():
    # Row 0: lp = [log 2, 0], old = 0 -> ratios 2, 1; row 1: ratio 1 then padding holding inf/nan garbage.
    # Per-token A = [[1, -1], [2, x]], symmetric clip 0.2:
    #   (0,0): r = 2, A = 1: max(-2, -1.2) = -1.2 (clipped)
    #   (0,1): r = 1, A = -1: 1
    #   (1,0): r = 1, A = 2: -2
    # token-mean = (-1.2 + 1 - 2) / 3 = -2.2 / 3; clipfrac = 1/3
    # approx_kl = mean(old - lp) = (-log 2 + 0 + 0) / 3; ratio_mean = (2 + 1 + 1) / 3
    lp = torch.tensor([[math.log(2.0), 0.0], [0.0, float("nan")]], dtype=F64, requires_grad=True)
    old = torch.tensor([[0.0, 0.0], [0.0, float("inf")]], dtype=F64)
    adv = torch.tensor([[1.0, -1.0], [2.0, float("nan")]], dtype=F64)
    mask = torch.tensor([[True, True], [True, False]])
    loss, m = policy_gradient_loss(lp, old, adv, mask)
    assert loss.item() == pytest.approx(-2.2 / 3.0)
    assert m["clipfrac"].item() == pytest.approx(1.0 / 3.0)
    assert m["approx_kl"].item() == pytest.approx(-math.log(2.0) / 3.0)
    assert m["ratio_mean"].item() == pytest.approx(4.0 / 3.0)
    assert all(not v.requires_grad and v.dim() == 0 for v in m.values())
    loss.backward()
    assert torch.isfinite(lp.grad).all() and lp.grad[1, 1].item() == 0.0


def test_pg_row_advantages_equal_broadcast_token_advantages():
    gen = torch.Generator().manual_seed(0)
    lp = torch.randn(4, 5, generator=gen, dtype=F64) * 0.3
    old = torch.randn(4, 5, generator=gen, dtype=F64) * 0.3
    adv = torch.randn(4, generator=gen, dtype=F64)
    mask = torch.rand(4, 5, generator=gen) > 0.3
    for agg in ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean"):
        a, _ = policy_gradient_loss(lp, old, adv, mask, agg=agg)
        b, _ = policy_gradient_loss(lp, old, adv[:, None].expand(4, 5), mask, agg=agg)
        assert torch.equal(a, b)


def test_pg_errors():
    lp = torch.zeros(2, 3)
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"old_log_probs \(2, 4\)"):
        policy_gradient_loss(lp, torch.zeros(2, 4), torch.zeros(2), mask)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        policy_gradient_loss(lp, lp, torch.zeros(3), mask)
    with pytest.raises(ValueError, match="dual_clip"):
        policy_gradient_loss(lp, lp, torch.zeros(2), mask, dual_clip=1.0)
    with pytest.raises(ValueError, match="token-mean, seq-mean-token-sum, seq-mean-token-mean"):
        policy_gradient_loss(lp, lp, torch.zeros(2), mask, agg="mean")


# ----------------------------------------------------------------------------------------------------
# kl_penalty
# ----------------------------------------------------------------------------------------------------

def test_kl_kinds_hand_values():
    # lp = log 0.5, ref = log 0.25: k1 = log 2 = 0.6931471806
    # d = ref - lp = -log 2: k3 = e^d - d - 1 = 0.5 + 0.6931471806 - 1 = 0.1931471806
    # lp = ref: every kind gives 0.
    # d = 20 (ref = 0, lp = -20): k3 = e^20 - 21 = 485165174.4097903, low-var clamps to 10.
    lp = torch.tensor([[math.log(0.5), -1.0, -20.0]], dtype=F64)
    ref = torch.tensor([[math.log(0.25), -1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(kl_penalty(lp, ref, "k1"),
                               torch.tensor([[0.6931471806, 0.0, -20.0]], dtype=F64))
    torch.testing.assert_close(kl_penalty(lp, ref, "k3"),
                               torch.tensor([[0.1931471806, 0.0, 485165174.4097903]], dtype=F64))
    torch.testing.assert_close(kl_penalty(lp, ref), torch.tensor([[0.1931471806, 0.0, 10.0]], dtype=F64))
    # Beyond 20 the low-var input is clamped before exp: d = 50 behaves like d = 20 -> still 10, finite.
    out = kl_penalty(torch.tensor([-50.0]), torch.tensor([0.0]), "low-var")
    assert out.item() == 10.0


def test_kl_errors():
    with pytest.raises(ValueError, match="k1, k3, low-var"):
        kl_penalty(torch.zeros(2), torch.zeros(2), "mse")
    with pytest.raises(ValueError, match=r"log_probs \(2,\), ref_log_probs \(3,\)"):
        kl_penalty(torch.zeros(2), torch.zeros(3), "k1")


# ----------------------------------------------------------------------------------------------------
# entropy_from_logits
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,seed", [((7,), 0), ((3, 5), 1), ((2, 3, 50), 2)])
def test_entropy_matches_direct_formula(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=gen, dtype=F64) * 3.0
    p = torch.softmax(logits, dim=-1)
    direct = -(p * torch.log(p)).sum(dim=-1)
    torch.testing.assert_close(entropy_from_logits(logits), direct, atol=1e-10, rtol=0)


def test_entropy_hand_values_and_stability():
    # Uniform over 4: log 4 = 1.3862943611. p = (0.75, 0.25): -(.75 ln .75 + .25 ln .25) = 0.5623351446.
    assert entropy_from_logits(torch.zeros(4)).item() == pytest.approx(1.3862943611)
    z = torch.tensor([math.log(3.0), 0.0], dtype=F64)
    assert entropy_from_logits(z).item() == pytest.approx(0.5623351446)
    # Huge logits (no overflow) and -inf logits (masked vocab) stay finite, gradients too.
    big = torch.tensor([1e4, 1e4 - math.log(3.0)], dtype=F64)
    assert entropy_from_logits(big).item() == pytest.approx(0.5623351446)
    zm = torch.tensor([0.0, 0.0, float("-inf")], requires_grad=True)
    h = entropy_from_logits(zm)
    assert h.item() == pytest.approx(math.log(2.0))
    h.backward()
    assert torch.isfinite(zm.grad).all()
    with pytest.raises(ValueError, match=r"\(\)"):
        entropy_from_logits(torch.tensor(0.0))


def test_value_loss_hand_worked_clipping():
    from src.algos.losses import value_loss

    values = torch.tensor([1.0, 0.5, -1.0], requires_grad=True)
    old = torch.tensor([0.5, 0.5, 0.0])
    targets = torch.tensor([2.0, 0.0, 1.0])
    loss, stats = value_loss(values, old, targets, clip=0.2)
    # row 0: V=1 moved 0.5 from old, V_clip = 0.7; (1-2)^2 = 1, (0.7-2)^2 = 1.69 -> 1.69 (clipped term)
    # row 1: V=old, V_clip = 0.5; both (0.5)^2 = 0.25 -> 0.25
    # row 2: V=-1, V_clip = -0.2; (-1-1)^2 = 4, (-0.2-1)^2 = 1.44 -> 4
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.25 + 4.0) / 3)
    assert stats["value_clipfrac"].item() == pytest.approx(1 / 3)
    assert stats["value_error"].item() == pytest.approx((1.0 + 0.5 + 2.0) / 3)
    loss.backward()
    # the clipped term of row 0 has no gradient w.r.t. V; rows 1 and 2: d/dV 0.5 (V-R)^2 / 3
    torch.testing.assert_close(values.grad, torch.tensor([0.0, 0.5 / 3, -2.0 / 3]))
    plain, _ = value_loss(values, old, targets, clip=None)
    assert plain.item() == pytest.approx(0.5 * (1.0 + 0.25 + 4.0) / 3)
    with pytest.raises(ValueError):
        value_loss(values, old[:2], targets)
    with pytest.raises(ValueError):
        value_loss(values, old, targets, clip=0.0)
