"""Tests for src.algos.empg: hand-worked numbers, properties (hypothesis), Proposition 1."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from src.algos.empg import empg_advantages, empg_factors, score_norm_sq_expectation

F64 = torch.float64
HYP = settings(max_examples=60, deadline=None)


# ----------------------------------------------------------------------------------------------------
# Hand-worked 2 x 3 example
#
# entropy = [[0.0, 1.0, 2.0],      mask = [[T, T, T],      advantages = [[ 1,  1,  1],
#            [2.0, 0.5, 9.9]]               [T, T, F]]                     [-1, -1, 7]]   (9.9, 7 = padding)
# min = 0, max = 2  ->  H_norm = [[0, 0.5, 1], [1, 0.25, -]]   (eps = 1e-8 changes them by < 1e-8)
# k = 1: exp(-H_norm) = 1, e^-0.5 = 0.6065306597, e^-1 = 0.3678794412, e^-1 = 0.3678794412,
#                       e^-0.25 = 0.7788007831
#   sum = 3.1210903251, mean = 0.6242180650
#   g = exp(-H_norm) / 0.6242180650 = [[1.6020042611, 0.9716647013, 0.5893444323],
#                                      [0.5893444323, 1.2476421730, 0]]
# f_next (k' = 1) = exp(-H_norm of the next step), 0 at the last real step:
#   row 0: [e^-0.5, e^-1, 0] = [0.6065306597, 0.3678794412, 0]
#   row 1: [e^-0.25, 0, 0]   = [0.7788007831, 0, 0]            (step 2 is padding)
# A_mod = g A + 0.1 f_next:
#   row 0: 1.6020042611 + 0.0606530660 = 1.6626573270
#          0.9716647013 + 0.0367879441 = 1.0084526454
#          0.5893444323 + 0          = 0.5893444323
#   row 1: -0.5893444323 + 0.0778800783 = -0.5114643540
#          -1.2476421730 + 0           = -1.2476421730
# normalise over the 5 real steps: mean = 1.5013478778 / 5 = 0.3002695756
#   population std = sqrt(sum (x - mean)^2 / 5) = 1.0484398573
#   (x - mean) / std = [1.2994429093, 0.6754636980, 0.2757190620, -0.7742303158, -1.4763953535]
# ----------------------------------------------------------------------------------------------------

def _hand_batch():
    entropy = torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.5, 9.9]], dtype=F64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    adv = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 7.0]], dtype=F64)
    return entropy, mask, adv


def test_factors_hand_worked():
    entropy, mask, _ = _hand_batch()
    g, f = empg_factors(entropy, mask)
    g_exp = torch.tensor([[1.6020042611, 0.9716647013, 0.5893444323], [0.5893444323, 1.2476421730, 0.0]],
                         dtype=F64)
    f_exp = torch.tensor([[0.6065306597, 0.3678794412, 0.0], [0.7788007831, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(g, g_exp, atol=1e-5, rtol=0)
    torch.testing.assert_close(f, f_exp, atol=1e-5, rtol=0)


def test_advantages_hand_worked_unnormalised_and_normalised():
    entropy, mask, adv = _hand_batch()
    raw = empg_advantages(adv, entropy, mask, normalize=False)
    raw_exp = torch.tensor([[1.6626573270, 1.0084526454, 0.5893444323], [-0.5114643540, -1.2476421730, 0.0]],
                           dtype=F64)
    torch.testing.assert_close(raw, raw_exp, atol=1e-5, rtol=0)
    out = empg_advantages(adv, entropy, mask)
    out_exp = torch.tensor([[1.2994429093, 0.6754636980, 0.2757190620], [-0.7742303158, -1.4763953535, 0.0]],
                           dtype=F64)
    torch.testing.assert_close(out, out_exp, atol=1e-5, rtol=0)


def test_hand_worked_float32_and_k_values():
    # k = 0 makes every exp(-k H_norm) = 1 -> g = 1; k' = 0 makes every existing bonus 1.
    entropy, mask, adv = _hand_batch()
    g, f = empg_factors(entropy.float(), mask, k=0.0, k_future=0.0)
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]))
    torch.testing.assert_close(f, torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    # k = 2: exp(-2 H_norm) = [1, e^-1, e^-2, e^-2, e^-0.5] = [1, .3678794412, .1353352832, .1353352832,
    # .6065306597], mean = 2.2450806673 / 5 = 0.4490161335 -> g[0,0] = 1 / 0.4490161335 = 2.2270914
    g2, _ = empg_factors(entropy, mask, k=2.0)
    assert g2[0, 0].item() == pytest.approx(2.2270914, abs=1e-5)
    assert g2[0, 2].item() == pytest.approx(0.1353352832 / 0.4490161335, abs=1e-5)


# ----------------------------------------------------------------------------------------------------
# Direct edge cases
# ----------------------------------------------------------------------------------------------------

def test_constant_entropy_gives_unit_weight_and_finite_output():
    entropy = torch.full((3, 4), 0.7, dtype=F64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    g, f = empg_factors(entropy, mask)
    assert torch.equal(g, mask.to(F64))
    # H_norm = 0 everywhere -> bonus exp(0) = 1 wherever a next real step exists.
    assert torch.equal(f, torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=F64))
    adv = torch.randn(3, 4, dtype=F64)
    out = empg_advantages(adv, entropy, mask)
    assert torch.isfinite(out).all()


def test_no_real_steps_gives_zeros():
    entropy = torch.rand(2, 3)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    g, f = empg_factors(entropy, mask)
    assert torch.equal(g, torch.zeros(2, 3)) and torch.equal(f, torch.zeros(2, 3))
    out = empg_advantages(torch.randn(2, 3), entropy, mask)
    assert torch.equal(out, torch.zeros(2, 3))


def test_single_real_step_normalises_to_zero():
    # One real step: std = 0, so (x - mean) / (0 + eps) = 0 / eps = 0; g = 1, no bonus.
    entropy = torch.tensor([[3.0, 0.0]])
    mask = torch.tensor([[True, False]])
    out = empg_advantages(torch.tensor([[2.0, 0.0]]), entropy, mask)
    assert torch.equal(out, torch.zeros(1, 2))
    raw = empg_advantages(torch.tensor([[2.0, 0.0]]), entropy, mask, normalize=False)
    assert torch.equal(raw, torch.tensor([[2.0, 0.0]]))


def test_nan_and_inf_padding_do_not_leak():
    entropy, mask, adv = _hand_batch()
    clean = empg_advantages(adv, entropy, mask)
    entropy[1, 2] = float("nan")
    adv[1, 2] = float("inf")
    dirty = empg_advantages(adv, entropy, mask)
    assert torch.equal(clean, dirty)


def test_shape_checks_name_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        empg_factors(torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        empg_factors(torch.zeros(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="advantages"):
        empg_advantages(torch.zeros(2, 2), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="entropy"):
        empg_advantages(torch.zeros(2, 3), torch.zeros(3, 3), torch.ones(2, 3, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------------
# Properties on random batches
# ----------------------------------------------------------------------------------------------------

@st.composite
def step_batches(draw, distinct_entropy: bool = False):
    """(entropy, advantages, mask) float64 (B, T) left-aligned; padding holds arbitrary numbers."""
    b = draw(st.integers(1, 5))
    t = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(0, t), min_size=b, max_size=b))
    if sum(lengths) == 0:
        lengths[0] = 1
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    if distinct_entropy:
        # Distinct on a grid of 0.05 so strict orderings survive float rounding.
        ints = draw(st.lists(st.integers(0, 200), min_size=b * t, max_size=b * t, unique=True))
        entropy = torch.tensor(ints, dtype=F64).reshape(b, t) * 0.05
    else:
        vals = draw(st.lists(st.floats(0.0, 8.0), min_size=b * t, max_size=b * t))
        entropy = torch.tensor(vals, dtype=F64).reshape(b, t)
    adv_vals = draw(st.lists(st.floats(-3.0, 3.0), min_size=b * t, max_size=b * t))
    adv = torch.tensor(adv_vals, dtype=F64).reshape(b, t)
    return entropy, adv, mask


def _masked_normalise(x, mask, eps=1e-8):
    vals = x[mask]
    mean = vals.mean()
    std = vals.std(unbiased=False)
    return torch.where(mask, (x - mean) / (std + eps), torch.zeros_like(x))


@HYP
@given(step_batches(), st.floats(0.0, 4.0))
def test_mean_of_g_over_real_steps_is_one(batch, k):
    entropy, _, mask = batch
    g, _ = empg_factors(entropy, mask, k=k)
    assert g[mask].mean().item() == pytest.approx(1.0, abs=1e-12)


@HYP
@given(step_batches(distinct_entropy=True), st.floats(0.1, 4.0))
def test_g_strictly_decreasing_in_entropy(batch, k):
    entropy, _, mask = batch
    g, _ = empg_factors(entropy, mask, k=k)
    h, gv = entropy[mask], g[mask]
    order = torch.argsort(h)
    assert (gv[order][1:] < gv[order][:-1]).all()


@HYP
@given(step_batches())
def test_zeta_zero_k_zero_gives_normalised_base_advantages(batch):
    entropy, adv, mask = batch
    g, _ = empg_factors(entropy, mask, k=0.0)
    assert torch.equal(g, mask.to(F64))
    raw = empg_advantages(adv, entropy, mask, k=0.0, zeta=0.0, normalize=False)
    assert torch.equal(raw, torch.where(mask, adv, torch.zeros_like(adv)))
    out = empg_advantages(adv, entropy, mask, k=0.0, zeta=0.0)
    torch.testing.assert_close(out, _masked_normalise(adv, mask), atol=1e-9, rtol=0)


@HYP
@given(step_batches(), st.floats(0.0, 3.0))
def test_last_real_step_gets_no_bonus_and_padding_is_zero(batch, k_future):
    entropy, adv, mask = batch
    g, f = empg_factors(entropy, mask, k_future=k_future)
    lengths = mask.sum(dim=1)
    for b, n in enumerate(lengths.tolist()):
        if n > 0:
            assert f[b, n - 1].item() == 0.0
        assert (f[b, : max(n - 1, 0)] > 0).all()
    assert (g[~mask] == 0).all() and (f[~mask] == 0).all()
    for normalize in (True, False):
        out = empg_advantages(adv, entropy, mask, normalize=normalize)
        assert (out[~mask] == 0).all()
        assert torch.isfinite(out).all()


@HYP
@given(step_batches(), st.integers(1, 3), st.integers(1, 3), st.floats(-1e6, 1e6))
def test_extra_padding_rows_and_columns_change_nothing(batch, extra_rows, extra_cols, garbage):
    entropy, adv, mask = batch
    b, t = mask.shape
    ref = empg_advantages(adv, entropy, mask)
    ent2 = torch.full((b + extra_rows, t + extra_cols), garbage, dtype=F64)
    adv2 = torch.full_like(ent2, -garbage)
    mask2 = torch.zeros(b + extra_rows, t + extra_cols, dtype=torch.bool)
    ent2[:b, :t], adv2[:b, :t], mask2[:b, :t] = entropy, adv, mask
    # Also overwrite the original padding with garbage.
    ent2[:b, :t] = torch.where(mask, entropy, torch.full_like(entropy, garbage))
    out = empg_advantages(adv2, ent2, mask2)
    torch.testing.assert_close(out[:b, :t], ref, atol=1e-9, rtol=0)
    assert (out[b:] == 0).all() and (out[:, t:] == 0).all()


@HYP
@given(step_batches(), st.randoms(use_true_random=False))
def test_permuting_trajectories_permutes_output(batch, rnd):
    entropy, adv, mask = batch
    perm_list = list(range(mask.shape[0]))
    rnd.shuffle(perm_list)
    perm = torch.tensor(perm_list)
    ref = empg_advantages(adv, entropy, mask)
    out = empg_advantages(adv[perm], entropy[perm], mask[perm])
    torch.testing.assert_close(out, ref[perm], atol=1e-9, rtol=0)


@HYP
@given(step_batches(distinct_entropy=True), st.floats(0.1, 3.0), st.floats(0.1, 5.0))
def test_positive_advantage_lower_entropy_gets_larger_modulated_advantage(batch, k, a):
    entropy, _, mask = batch
    adv = torch.full_like(entropy, a)
    out = empg_advantages(adv, entropy, mask, k=k, zeta=0.0, normalize=False)
    h, v = entropy[mask], out[mask]
    order = torch.argsort(h)
    assert (v[order][1:] < v[order][:-1]).all()


@HYP
@given(step_batches(), st.floats(0.0, 3.0), st.floats(0.0, 1.0))
def test_normalised_output_has_zero_mean_unit_std(batch, k, zeta):
    entropy, adv, mask = batch
    raw = empg_advantages(adv, entropy, mask, k=k, zeta=zeta, normalize=False)
    out = empg_advantages(adv, entropy, mask, k=k, zeta=zeta)
    assert out[mask].mean().item() == pytest.approx(0.0, abs=1e-9)
    raw_std = raw[mask].std(unbiased=False).item()
    # dividing by (std + eps) leaves std / (std + eps), a hair under 1 when the spread is small
    expected = raw_std / (raw_std + 1e-8)
    assert out[mask].std(unbiased=False).item() == pytest.approx(expected, abs=1e-9)


# ----------------------------------------------------------------------------------------------------
# Proposition 1
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,seed", [((5,), 0), ((3, 7), 1), ((2, 4, 11), 2), ((1,), 3), ((6, 2), 4)])
def test_proposition_1_matches_autograd(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=gen, dtype=F64) * 2.0)
    flat = logits.reshape(-1, shape[-1])
    expected = []
    for z0 in flat:
        p = torch.softmax(z0, dim=-1)
        total = torch.zeros((), dtype=F64)
        for a in range(shape[-1]):
            z = z0.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(torch.log_softmax(z, dim=-1)[a], z)
            total = total + p[a] * grad.pow(2).sum()
        expected.append(total)
    expected = torch.stack(expected).reshape(shape[:-1])
    torch.testing.assert_close(score_norm_sq_expectation(logits), expected, atol=1e-5, rtol=0)


def test_proposition_1_extremes():
    # Uniform over V: 1 - V * (1/V)^2 = 1 - 1/V. One-hot (very peaked): ~0.
    assert score_norm_sq_expectation(torch.zeros(4)).item() == pytest.approx(0.75, abs=1e-7)
    assert score_norm_sq_expectation(torch.tensor([50.0, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-7)
    # Two actions with p = (0.75, 0.25): 1 - (0.5625 + 0.0625) = 0.375.
    z = torch.tensor([math.log(3.0), 0.0], dtype=F64)
    assert score_norm_sq_expectation(z).item() == pytest.approx(0.375, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(\)"):
        score_norm_sq_expectation(torch.tensor(1.0))
